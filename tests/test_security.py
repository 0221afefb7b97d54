"""Security: no shell anywhere, and what goes through a shell (crontab) arrives quoted."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import autotune
from autotune import cron
from tests.conftest import AUTOTUNE

SOURCES = [p for p in Path(autotune.__file__).parent.rglob("*.py")]


def test_no_shell_is_ever_used_to_start_a_process():
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                    offenders.append(f"{path.name}:{node.lineno} {name}")
                for kw in node.keywords:
                    if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        offenders.append(f"{path.name}:{node.lineno} shell=")
    assert SOURCES and not offenders


def test_the_crontab_line_survives_hostile_paths_and_model_names(tmp_path, monkeypatch):
    # A python path with a space and a model name full of shell syntax: cron hands the line to /bin/sh.
    fake_python = tmp_path / "py thon"
    record = tmp_path / "argv.json"
    fake_python.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'home': os.environ.get('AUTOTUNE_HOME')}}, open({str(record)!r}, 'w'))\n"
    )
    fake_python.chmod(0o755)
    home = tmp_path / "home $(touch pwned) 100%"
    monkeypatch.setattr(sys, "executable", str(fake_python))
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    monkeypatch.delenv("AUTOTUNE_DB_URL", raising=False)
    model = str(tmp_path / "models" / "it's; rm -rf ~ `id` $HOME 50%")
    line = cron.crontab_line(model, "0 2 * * *")
    assert "\n" not in line
    command = line.split(" ", 5)[5].rsplit(" # ", 1)[0].replace("\\%", "%")  # what cron gives the shell
    subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, check=True, timeout=30)
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["-m", "autotune.cli", "retune", "--model", model]
    assert seen["home"] == str(home)
    assert not (tmp_path / "pwned").exists()


def test_files_under_autotune_home_are_user_only(tmp_path):
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home"), "AUTOTUNE_DB_URL": ""}
    env.pop("AUTOTUNE_DB_URL")
    proc = subprocess.run(
        [*AUTOTUNE, "schedule", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    created = [p for p in (tmp_path / "home").rglob("*")]
    assert created
    for p in [tmp_path / "home", *created]:
        assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others: {oct(p.stat().st_mode)}"
