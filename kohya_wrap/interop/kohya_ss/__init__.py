"""Convert kohya_ss GUI LoRA configs to kohya-wrap specs, and back.

kohya_ss (https://github.com/bmaltais/kohya_ss) is a Gradio GUI over
kohya-ss/sd-scripts. Its LoRA tab saves its state as a flat JSON object ("Save
config"), and the community presets in ``presets/lora/*.json`` are the same
kind of file with fewer keys. This package turns such a dict into a kohya-wrap
spec dict (``spec_from_kohya_ss``), and a spec into a dict that the GUI's
"Open config" can load (``kohya_ss_from_spec``). Both are pure: no files are
read or written. The one outside look-up, the listing of concept folders, is
the ``subfolders`` callable that the caller passes in.

The package: ``tables`` (the GUI's keys, defaults, one-to-one fields and LoRA
types, as data), ``values`` (value conversion and the reasons in ``Unmapped``),
``state`` (the bookkeeping of one import or export), ``importer`` and
``exporter`` (the two directions), ``network`` and ``samples`` (the LoRA type
and the sample prompts, both ways). The mapping is described for users in
docs/kohya_ss-mapping.md.

Where the mapping comes from
----------------------------
Written by reading kohya_ss at commit ``45088f04af78e11cec5407ff4652ea3ed2c14422``
(2026-07-10, "feat: upgrade Gradio to 6.17.3 ...", see ``KOHYA_SS_COMMIT``):

* ``kohya_gui/lora_gui.py``: ``save_configuration``/``open_configuration``
  (which keys a saved JSON has; the JSON holds every parameter except
  ``file_path``, sorted by name, and so includes the UI flag ``save_as_bool``)
  and ``train_model`` (what the GUI passes to sd-scripts for each key:
  which script, ``network_module`` and ``network_args`` per ``LoRA_type``,
  ``epoch`` versus ``max_train_steps``, the learning-rate rules, and the
  filter that drops every value equal to ``""``, ``False``, ``0`` or ``None``).
* ``kohya_gui/common_gui.py``: ``update_my_data`` (how "Open config" repairs
  old files: ``LoCon`` -> ``LyCORIS/LoCon``, boolean ``xformers``,
  ``lora_network_weights``, ``use_wandb``, ``use_8bit_adam``, and what an empty
  string becomes for each numeric key) and ``resolve_lr_warmup_steps``.
* ``kohya_gui/class_*.py``: the GUI's default value of each field.
* sd-scripts v0.10.1 (kohya-wrap's pin; ``train_network.py``,
  ``library/train_util.py``, ``library/config_util.py``, and the option schema
  in ``kohya_wrap/data/option_schema``) for the argument names, types, choices
  and defaults, and the dataset-config keys. Every ``training`` key the importer
  writes is an argument of the script its model family uses.

The rules
---------
* The spec gets what the GUI would have passed to sd-scripts. A key whose
  value the GUI drops (``""``, ``0``, ``False``, ``None``; per key, see
  ``_FIELDS``) is "unset" and left out of the spec. Left-out keys are still
  *consumed*: they carry no setting.
* A key the spec needs that the file lacks altogether (``max_resolution``; a
  training length) gets the GUI field's default, which "Open config" keeps for
  a missing key (``tables._GUI_MISSING_DEFAULTS``), with a note;
  ``gui_defaults=False`` turns this off.
* A value sd-scripts would stop on, where the GUI lets it through
  (``bucket_reso_steps`` that is not the training script's multiple, with
  bucketing on), becomes the nearest value it accepts, with a note; one it only
  ignores or advises against is kept, with a note.
* Every key of the GUI dict ends up in ``ImportResult.consumed`` (mapped, or
  unset) or in ``ImportResult.unmapped`` with a reason; a key can be in both
  when part of it could not be mapped (a concept folder whose name is not
  ``<repeats>_<name>``). Keys of a model family whose checkbox is off
  (SD3, HunyuanImage-2.1, Anima, Lumina) have no effect in the GUI; they are
  consumed and counted in one note. With the checkbox on, ``model.family`` is
  set and those keys map to the options of the family's script (families.py;
  the few the pinned sd-scripts lacks are reported). Keys for a ``LoRA_type`` other than the
  chosen one are consumed when they hold the GUI default, and reported as
  inactive otherwise.
* The exporter writes every key of a "Save config" file except the
  parameters of the four model families kohya-wrap does not train (their
  checkboxes are written, unchecked). A key the spec does not set gets the
  value that makes sd-scripts use its own default (``max_bucket_reso`` 1024,
  ``max_data_loader_n_workers`` 8, ``optimizer`` AdamW, ...), or the spec's own
  default where kohya-wrap has one (``caption_extension`` ".txt"; [sample]
  steps 20, cfg 7, seed 1, sampler euler_a, size = the training resolution),
  never the GUI's default, so that the file means what the spec means.
* The spec shape is kohya_wrap/spec/models.py: v_parameterization only with
  family sd2, repeats >= 1, a regularisation concept has no token, sample
  prompts are plain strings or ``{text, negative, width, height, steps, cfg,
  seed, sampler}`` tables and need a schedule.
"""

from __future__ import annotations

from kohya_wrap.interop.kohya_ss.exporter import kohya_ss_from_spec
from kohya_wrap.interop.kohya_ss.importer import ImportResult, spec_from_kohya_ss
from kohya_wrap.interop.kohya_ss.samples import _SPEC_SAMPLE_DEFAULTS
from kohya_wrap.interop.kohya_ss.tables import (
    _FIELDS,
    _GUI_BASE,
    _NET_KEYS,
    _NET_TYPES,
    KOHYA_SS_COMMIT,
    _unsupported_family_of,
)
from kohya_wrap.interop.kohya_ss.values import (
    R_GUI_ONLY,
    R_LAYOUT,
    R_NO_EQUIV,
    R_NO_GUI_FIELD,
    R_NO_SPEC_FIELD,
    R_SECRET,
    R_UNKNOWN,
    Unmapped,
)

__all__ = [
    "KOHYA_SS_COMMIT",
    "ImportResult",
    "Unmapped",
    "kohya_ss_from_spec",
    "spec_from_kohya_ss",
    # the reasons an Unmapped gives
    "R_GUI_ONLY",
    "R_LAYOUT",
    "R_NO_EQUIV",
    "R_NO_GUI_FIELD",
    "R_NO_SPEC_FIELD",
    "R_SECRET",
    "R_UNKNOWN",
    # the tables, for the tests that check them
    "_FIELDS",
    "_GUI_BASE",
    "_NET_KEYS",
    "_NET_TYPES",
    "_SPEC_SAMPLE_DEFAULTS",
    "_unsupported_family_of",
]
