from genrep.cli.main import main

raise SystemExit(main())
