"""A user's registration adds to the built-in models and data sets, it never hides them."""

import subprocess
import sys

import pytest

from genrep.errors import ConfigError, DataError

FRESH_PROCESS = """
from genrep.data import dataset_names, register_source
from genrep.models.registry import get_model_spec, model_names, register_model
from genrep.models.vae import VAEConfig

register_model("my-vae", config_cls=VAEConfig, build=get_model_spec("vae").build, description="mine")
register_source("my-data", load=lambda split: None, status=lambda: "mine", description="mine")
print(sorted(model_names()))
print(sorted(dataset_names()))
"""


def test_first_registration_keeps_the_built_ins():
    # A fresh interpreter: the user's registration is the very first registry call.
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS.replace('get_model_spec("vae").build', "None")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    models, datasets = eval(out[0]), eval(out[1])
    assert {"my-vae", "vae", "e2e-sae", "ddgm"} <= set(models)
    assert {"my-data", "digits", "mnist", "calorimeter"} <= set(datasets)


def test_a_taken_name_is_refused_unless_replaced():
    from genrep.data import get_source, register_source
    from genrep.models.registry import get_model_spec, register_model
    from genrep.models.vae import VAEConfig

    with pytest.raises(ConfigError, match="model 'vae' is already registered"):
        register_model("vae", config_cls=VAEConfig, build=None, description="x")
    with pytest.raises(DataError, match="data set 'digits' is already registered"):
        register_source("digits", load=None, status=None, description="x")
    original = get_source("digits")
    try:
        register_source("digits", load=original.load, status=original.status, description="mine", replace=True)
        assert get_source("digits").description == "mine"
    finally:
        register_source("digits", load=original.load, status=original.status, description=original.description,
                        splits=original.splits, replace=True)
    assert get_model_spec("vae").config_cls is VAEConfig
