"""`genrep simulate RUN --particles FILE -o OUT.npz`: calorimeter responses from a trained model."""

from __future__ import annotations


def register(commands) -> None:
    p = commands.add_parser(
        "simulate", help="simulate calorimeter responses for given particles with a trained conditional model",
        description="Generate ZDC responses (raw photo-electron counts, 44×44) for particles with a model "
                    "trained on calorimeter data (e.g. genrep train cvae --dataset calorimeter). Particles: "
                    "a .csv whose header names Energy, Vx, Vy, Vz, Px, Py, Pz, mass, charge (any order, "
                    "case-insensitive; other columns are ignored) or an .npz with 'particles' (N, 9) and "
                    "optionally the real 'responses' (N, 44, 44) for --compare. The output .npz holds "
                    "responses, particles, particle_index and channels (ch1..ch5), one row per response.",
        epilog="Make a particles file with real (synthetic-simulator) responses: "
               "genrep simulate --export-particles 500 -o particles.npz")
    p.add_argument("run", nargs="?", default=None, help="run folder of a conditional calorimeter model")
    p.add_argument("--particles", default=None, metavar="FILE", help="particles .csv or .npz")
    p.add_argument("-o", "--out", default=None, help="output .npz (default responses.npz)")
    p.add_argument("--n-per-particle", type=int, default=1, metavar="K", help="responses per particle")
    p.add_argument("--seed", type=int, default=0,
                   help="sampling seed (with --export-particles: the synthetic data seed)")
    p.add_argument("--batch-size", type=int, default=1000, help="responses per model call")
    p.add_argument("--compare", action="store_true",
                   help="also draw real vs generated showers and channel histograms into OUT_compare.png "
                        "(needs 'responses' in the particles .npz)")
    p.add_argument("--export-particles", type=int, default=None, metavar="N",
                   help="instead of simulating: write N synthetic test-split particles with their simulator "
                        "responses to -o (no RUN needed)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=simulate_cmd)


def simulate_cmd(args) -> int:
    from genrep.errors import InputError
    from genrep.experiments import simulate as sim

    if args.export_particles is not None:
        if args.run or args.particles or args.compare:
            raise InputError("--export-particles writes a particles file and takes no RUN, --particles or --compare")
        out = sim.export_particles(args.out or "particles.npz", args.export_particles, seed=args.seed)
        print(f"wrote {out}: {args.export_particles} synthetic particles with their simulator responses "
              f"(keys particles, responses)")
        return 0
    if not args.run or not args.particles:
        raise InputError("simulate needs a run folder and --particles FILE.csv|FILE.npz "
                         "(or --export-particles N to make a particles file)")
    model, pz_sign = sim.load_simulator(args.run)
    particles, real = sim.read_particles(args.particles, pz_sign=pz_sign)
    if args.compare and real is None:
        raise InputError(f"--compare needs real responses: {args.particles} has none; pass an .npz with "
                         "'particles' and 'responses' (e.g. from genrep simulate --export-particles N)")
    result = sim.simulate_with(model, particles, args.n_per_particle, args.seed, batch_size=args.batch_size,
                               progress=not args.no_progress, pz_sign=pz_sign, where=args.particles,
                               energy_range=sim.simulator_energy_range(args.run, model))
    out = sim.write_responses(args.out or "responses.npz", result)
    print(f"wrote {out}: {len(result['responses'])} responses ({len(particles)} particles × "
          f"{args.n_per_particle}), 44×44 photo-electron counts")
    if args.compare:
        picture = sim.compare_picture(real, result["responses"], sim.default_compare_path(out),
                                      particle_index=result["particle_index"], particles=particles)
        metrics = sim.compare_metrics(real, result["responses"], result["particle_index"])
        if "channel_mae" in metrics:
            print(f"channel MAE (same particle)         {metrics['channel_mae']:.4g} p.e.")
        print(f"channel W1 (pooled-log convention)  {metrics['channel_wasserstein_pooled_log']:.4f}")
        print(f"wrote {picture}")
    return 0
