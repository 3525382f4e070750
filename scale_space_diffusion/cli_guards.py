"""Where ``ssd`` steps in around LightningCLI, which alone would get these wrong: a config file's YAML error names the
file; ``--group.field=null`` works for fields of a settings group (``--model.init_args.sampling.steps=null``); an
integer ``limit_*_batches`` stays a count of batches; and a folder that cannot be written (read-only, no permission,
a full disk) is one line of error, not a traceback."""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Trainer options where an int is a count of batches and a float a share of them; jsonargparse parses
# Lightning's `float | int | None` as float, so `limit_val_batches: 1` would mean 100 %.
BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def _options(argv: list[str]) -> list[tuple[str, str | None]]:
    """(``--key``, value or None) for each option, in order, for both ``--key=value`` and ``--key value``."""
    out, i = [], 0
    while i < len(argv):
        arg = "--config" + argv[i][2:] if argv[i] == "-c" or argv[i].startswith("-c=") else argv[i]  # -c: --config
        if arg.startswith("--") and "=" in arg:
            out.append(tuple(arg.split("=", 1)))
        elif arg.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
            out.append((arg, value))
            i += value is not None
        i += 1
    return out


def _load_yaml(path: str) -> Any:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def check_config_files(argv: list[str]) -> None:
    """Every ``--config`` file parses as YAML, or a one-line error names the file, the line and the problem."""
    import yaml

    for key, value in _options(argv):
        if key != "--config" or not value or not Path(value).is_file():
            continue
        try:
            _load_yaml(value)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"--config={value}: YAML syntax error{where}: {what}; fix the file") from err


def null_in_groups(argv: list[str]) -> list[str]:
    """``--model.init_args.<group>.<field>=null`` -> ``--model.init_args.<group>={<field>: null}``, which jsonargparse
    accepts and merges with the rest of the group (it refuses null for a field of a nested dataclass)."""
    out = []
    for arg in argv:
        m = re.fullmatch(r"(--model\.init_args\.[A-Za-z_]\w*)\.([A-Za-z_]\w*)=(null|None|~)", arg)
        out.append(f"{m[1]}={{{m[2]}: null}}" if m else arg)
    return out


@contextmanager
def nulls_in_groups(args: list[str] | dict | None) -> Iterator[list[str] | dict | None]:
    """``args`` (None: ``sys.argv``) with :func:`null_in_groups` applied, for LightningCLI's ``parse_arguments``."""
    if isinstance(args, dict):
        yield args
    elif args is not None:
        yield null_in_groups(list(args))
    else:  # LightningCLI reads sys.argv itself (and warns if given both): rewrite it for the parse only
        saved = sys.argv
        sys.argv = [saved[0], *null_in_groups(saved[1:])]
        try:
            yield None
        finally:
            sys.argv = saved


def batch_limits(argv: list[str]) -> dict[str, int]:
    """The ``limit_*_batches`` that were given as integers, in the config files or on the command line (the last
    one given wins, as in LightningCLI)."""
    found: dict[str, Any] = {}
    for key, value in _options(argv):
        if key == "--config" and value and Path(value).is_file():
            config = _load_yaml(value)
            trainer = config.get("trainer") if isinstance(config, dict) else None
            if isinstance(trainer, dict):
                found.update({k: v for k, v in trainer.items() if k in BATCH_LIMITS})
        elif key.startswith("--trainer.") and key[len("--trainer."):] in BATCH_LIMITS and value is not None:
            import yaml

            try:
                found[key[len("--trainer."):]] = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
    return {k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool)}


_CANNOT_WRITE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT}


def cannot_write(err: BaseException) -> str | None:
    """A one-line message for a write that the filesystem refused anywhere in ``err``'s chain (the outermost such
    error: ours name the file, e.g. a checkpoint's, and that the previous one is intact), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _CANNOT_WRITE:
            full = err.errno in (errno.ENOSPC, errno.EDQUOT)
            fix = ("free space on that disk or give another --trainer.default_root_dir" if full else
                   "give a writable --trainer.default_root_dir (and ModelCheckpoint dirpath)")  # fmt: skip
            if err.strerror != os.strerror(err.errno):  # a message of ours, e.g. checkpoint_io's: fix added if none
                said = any(w in err.strerror for w in ("default_root_dir", "free space", "writable"))
                return err.strerror if said else f"{err.strerror}; {fix}"
            where = f" {err.filename}" if err.filename else ""
            return f"cannot write{where} ({err.strerror}); {fix}; any checkpoint saved before this is intact"
        err = err.__cause__ or err.__context__
    return None
