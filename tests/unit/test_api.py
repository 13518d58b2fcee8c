"""The HTTP API's pieces that need no database: pairing uploads by name, its limits, its settings."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from worker.api import routes
from worker.api.auth import Authenticator
from worker.errors import ConfigError, RequestError
from worker.service.config import Settings

KEY = "A" * 43


def test_the_api_s_pair_limits_are_the_training_job_s() -> None:
    from worker.jobs import style as style_job

    assert (routes.MIN_PAIRS, routes.MAX_PAIRS) == (style_job.MIN_PAIRS, style_job.MAX_PAIRS)
    assert routes.MIN_PAIRS_WITH_PRESET == style_job.MIN_PAIRS_WITH_PRESET


def test_file_stem_undoes_what_the_app_does_to_an_uploaded_name() -> None:
    # The app uploads to {folder}/{Date.now()}_{name with [^a-zA-Z0-9._-] as _} and matches a RAW file
    # and its edit by the name without extension, lower-cased, [^a-z0-9_-] as _.
    assert routes.file_stem("p/styles/x/raw/1718000000000_IMG_0042.CR3") == "img_0042"
    assert routes.file_stem("p/styles/x/edited/1718000000123_img_0042.jpg") == "img_0042"
    assert routes.file_stem("p/a/1_Wedding_Day.final.JPG") == "wedding_day_final"
    assert routes.file_stem("p/a/no-extension") == "no-extension"


def test_pair_by_name_keeps_one_to_one_matches_only() -> None:
    raw = ["p/r/1_a.NEF", "p/r/2_b.NEF", "p/r/3_c.NEF", "p/r/4_d.NEF", "p/r/5_d.CR2"]
    edited = ["p/e/9_c.jpg", "p/e/8_a.jpg", "p/e/7_x.jpg", "p/e/6_d.jpg", "p/e/5_b.jpg", "p/e/4_b.png"]
    assert routes.pair_by_name(raw, edited) == [
        {"original_key": "p/r/3_c.NEF", "edited_key": "p/e/9_c.jpg"},
        {"original_key": "p/r/1_a.NEF", "edited_key": "p/e/8_a.jpg"},
    ]  # x has no RAW, d two RAWs, b two edits


def test_training_inputs_fall_back_to_the_histogram() -> None:
    refs = [f"p/e/{i}_n{i}.jpg" for i in range(5)]
    raws = [f"p/r/{i}_n{i}.NEF" for i in range(5)]
    method, payload = routes.training_inputs(refs, {"raw_image_keys": raws, "training_mode": "paired"}, "p")
    assert method == "lut3d" and len(payload["pairs"]) == 5
    assert routes.training_inputs(refs, {"raw_image_keys": raws}, "p")[0] == "histogram"  # not paired
    assert routes.training_inputs(refs, {"raw_image_keys": raws[:4], "training_mode": "paired"}, "p") == (
        "histogram",
        {"training_method": "histogram", "reference_keys": refs},
    )
    with pytest.raises(RequestError, match="no reference photos") as refused:
        routes.training_inputs([], {}, "p")
    assert refused.value.status == 400
    with pytest.raises(RequestError, match="outside photographer p"):
        routes.training_inputs(refs, {"raw_image_keys": ["q/r/1_n0.NEF"], "training_mode": "paired"}, "p")


def test_training_inputs_carry_a_lightroom_preset() -> None:
    refs = [f"p/e/{i}_n{i}.jpg" for i in range(5)]
    raws = [f"p/r/{i}_n{i}.NEF" for i in range(5)]
    preset = {"preset_file_key": "p/presets/look.xmp"}
    paired = {"raw_image_keys": raws[:3], "training_mode": "paired", **preset}
    assert routes.training_inputs(refs, paired, "p") == ("lut3d", {"pairs": ANY, **preset})  # 3 refine it
    assert routes.training_inputs(refs, {**paired, "raw_image_keys": raws[:2]}, "p") == ("preset", preset)
    assert routes.training_inputs([], preset, "p") == ("preset", preset)  # the preset alone
    with pytest.raises(RequestError, match="outside photographer p"):
        routes.training_inputs(refs, {"preset_file_key": "q/presets/theirs.xmp"}, "p")


def test_api_settings_and_what_they_refuse() -> None:
    settings = Settings.from_env(
        {
            "WORKER_API_HOST": "0.0.0.0",
            "WORKER_API_PORT": "9000",
            "WORKER_API_KEY": KEY,
            "SUPABASE_JWT_SECRET": "s" * 40,
        }
    )
    assert (settings.api_host, settings.api_port, settings.api_key) == ("0.0.0.0", 9000, KEY)
    assert Settings.from_env({}).api_host == "127.0.0.1"  # loopback unless told otherwise
    shown = str(settings.redacted()) + repr(settings)
    assert KEY not in shown and "s" * 40 not in shown
    with pytest.raises(ConfigError, match="WORKER_API_KEY must be at least 32"):
        Settings.from_env({"WORKER_API_KEY": "short"})
    with pytest.raises(ConfigError, match="WORKER_API_KEY"):
        Settings.from_env({"WORKER_API_KEY": "a/b" + "c" * 40})  # it may sit in a URL path
    with pytest.raises(ConfigError, match="SUPABASE_JWT_SECRET is shorter"):
        Settings.from_env({"SUPABASE_JWT_SECRET": "secret"})


def test_the_authenticator_needs_a_key_or_a_secret() -> None:
    with pytest.raises(ValueError):
        Authenticator(api_key=None, jwt_secret=None)
    keyed = Authenticator(api_key=KEY, jwt_secret=None)
    assert keyed.header(f"Bearer {KEY}").is_app_server
    assert keyed.header(f"bearer   {KEY} ").is_app_server
    assert keyed.path_key(KEY).is_app_server
    for header in (None, "", "Bearer", f"Token {KEY}", "Bearer eyJ.not.checked"):
        with pytest.raises(RequestError) as refused:
            keyed.header(header)
        assert refused.value.status == 401
    with pytest.raises(RequestError):
        Authenticator(api_key=None, jwt_secret="s" * 40).path_key(KEY)
