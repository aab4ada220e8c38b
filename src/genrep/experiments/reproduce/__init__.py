"""`genrep reproduce TABLE`: recipes that rerun a published experiment at a chosen scale and print
our numbers beside the thesis'. Each recipe module has NAME, TITLE, a SCALES dict and
`run(scale=, seeds=, out=, progress=, log=, **options)` returning a dict with a "markdown" table."""

from __future__ import annotations

from types import ModuleType

from genrep.errors import ConfigError


def recipes() -> dict[str, ModuleType]:
    from genrep.experiments.reproduce import table_4_3_1, table_4_4_1, table_5_7_1, table_6_6_1, table_6_6_2
    from genrep.experiments.reproduce import table_6_6_5, table_6_6_6, table_8_4_1, table_9_4_1, table_9_4_2
    from genrep.experiments.reproduce import table_9_4_4

    modules = (table_4_3_1, table_4_4_1, table_5_7_1, table_6_6_1, table_6_6_2, table_6_6_5, table_6_6_6, table_8_4_1,
               table_9_4_1, table_9_4_2, table_9_4_4)
    return {module.NAME: module for module in modules}


def get_recipe(name: str) -> ModuleType:
    table = recipes()
    if name not in table:
        raise ConfigError(f"unknown table {name!r}; available: {', '.join(sorted(table))}")
    return table[name]
