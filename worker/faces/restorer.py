"""Which face restorer the worker runs — CodeFormer, classical smoothing, or none — and why.

CodeFormer (and ParseNet, used for its paste-back masks) are non-commercial. CodeFormer
runs only when all three hold:

* ``WORKER_FACE_RESTORER=codeformer``,
* ``WORKER_CODEFORMER_LICENSE_ACCEPTED=true`` (the operator acknowledges the S-Lab
  License 1.0 and ParseNet's CC BY-NC-SA 4.0),
* ``codeformer.pth`` is in ``WORKER_MODELS_DIR`` and passes its hash check.

Otherwise the licence-clean classical path runs (``WORKER_FACE_RESTORER=off``: none),
and exactly one log line — also kept in ``ModelBundle.notes`` — says why.
"""

from __future__ import annotations

from worker.errors import ModelFileError
from worker.faces.skin import ClassicRestorer
from worker.models import codeformer, parsenet, registry
from worker.models.protocols import FaceParser, FaceRestorer
from worker.service import logs
from worker.service.config import Settings

log = logs.get("models")


def faces_per_call(device: str) -> int:
    """Faces per CodeFormer/ParseNet call: 8 on a GPU (batched across the photos of a batch), else 1."""
    return 8 if device == "cuda" else 1


def load_restorer(settings: Settings, device: str) -> tuple[FaceRestorer | None, FaceParser | None, str]:
    """(restorer, parser, note): the restorer the settings allow, loaded once."""
    if settings.face_restorer == "off":
        note = "face retouch off (WORKER_FACE_RESTORER=off)"
        log.info("face_restorer", restorer=None, reason=note)
        return None, None, note
    if settings.face_restorer == "classic":
        note = "face restorer: classic skin smoothing (licence-clean, no weights)"
        log.info("face_restorer", restorer="classic", reason=note)
        return ClassicRestorer(), None, note

    if not settings.codeformer_license_accepted:
        reason = "CodeFormer is non-commercial (S-Lab License 1.0) and WORKER_CODEFORMER_LICENSE_ACCEPTED is not true"
    elif not registry.is_present("codeformer", settings.models_dir):
        reason = "CodeFormer weights absent (run `apelier-worker models fetch codeformer`)"
    else:
        try:
            model = codeformer.load(registry.verify("codeformer", settings.models_dir), device)
        except ModelFileError as exc:
            reason = f"CodeFormer unusable: {exc.message}"
        else:
            parser, parser_note = _parser(settings, device)
            restorer = codeformer.CodeFormerRestorer(model, device, batch_size=faces_per_call(device))
            note = f"face restorer: CodeFormer on {device} (non-commercial licence acknowledged); {parser_note}"
            log.info("face_restorer", restorer="codeformer", device=device, mask=parser_note)
            return restorer, parser, note
    note = f"face restorer: classic skin smoothing — {reason}"
    log.warning("face_restorer_fallback", restorer="classic", reason=reason)
    return ClassicRestorer(), None, note


def _parser(settings: Settings, device: str) -> tuple[FaceParser | None, str]:
    if not registry.is_present("parsenet", settings.models_dir):
        return None, "paste-back mask: feathered oval (ParseNet weights absent)"
    try:
        model = parsenet.load(registry.verify("parsenet", settings.models_dir), device)
    except ModelFileError as exc:
        return None, f"paste-back mask: feathered oval (ParseNet unusable: {exc.message})"
    return parsenet.FaceParser(model, device, batch_size=faces_per_call(device)), "paste-back mask: ParseNet"
