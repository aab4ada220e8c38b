import dataclasses

import pytest

from genrep.config import dump_yaml, from_dict, load_yaml, merge, parse_overrides, to_dict
from genrep.errors import ConfigError


@dataclasses.dataclass
class Inner:
    width: int = 4
    rate: float = 0.5
    name: str | None = None


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    sizes: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    pair: tuple[float, float] = (0.0, 1.0)
    flag: bool = False


def test_yaml_round_trip(tmp_path):
    cfg = Outer(Inner(8, 0.25, "x"), [3, 4, 5], (-1.0, 1.0), True)
    dump_yaml(cfg, tmp_path / "c.yaml")
    assert from_dict(Outer, load_yaml(tmp_path / "c.yaml")) == cfg


def test_int_is_accepted_for_float_but_not_reverse():
    assert from_dict(Inner, {"rate": 1}).rate == 1.0
    with pytest.raises(ConfigError, match=r"inner\.width.*expected int"):
        from_dict(Outer, {"inner": {"width": 2.5}})


def test_unknown_key_is_named_with_its_path():
    with pytest.raises(ConfigError, match=r"unknown config key inner\.widht; valid keys: inner\.width"):
        from_dict(Outer, {"inner": {"widht": 3}})


@pytest.mark.parametrize("bad", [{"flag": "yes"}, {"sizes": 3}, {"sizes": [1, "a"]}, {"pair": [1.0]}])
def test_ill_typed_values(bad):
    with pytest.raises(ConfigError, match="config key"):
        from_dict(Outer, bad)


def test_overrides_parse_yaml_values_and_nest():
    over = parse_overrides(["inner.width=16", "inner.rate=1e-3", "sizes=[8, 9]", "inner.name=abc", "flag=true"])
    assert over == {"inner": {"width": 16, "rate": 1e-3, "name": "abc"}, "sizes": [8, 9], "flag": True}
    cfg = from_dict(Outer, merge(to_dict(Outer()), over))
    assert cfg.inner.width == 16 and cfg.inner.rate == 1e-3 and cfg.sizes == [8, 9] and cfg.flag


@pytest.mark.parametrize("bad", ["noequals", "=3"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides([bad])


def test_bad_yaml_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
