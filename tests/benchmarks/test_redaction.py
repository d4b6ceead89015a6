"""No password of a storage URL is printed, stored, logged or sent to W&B: a board run, an import, a sweep with its
report, and the messages that echo a command (`run --tuned` without a sweep, an unknown scheme), each with a
secret in the URL, then every output, every file written (W&B's offline runs included) and every database row is
grepped for it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.store import redact

SECRET = "Zq7hunter2Secret"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, shown", [
    (f"postgresql://u:{SECRET}@localhost:5432/db", "postgresql://u:***@localhost:5432/db"),
    (f"postgresql+psycopg2://u:p@ss{SECRET}@h/db", "postgresql+psycopg2://u:***@h/db"),
    (f"paperboard sweep q --storage mysql://root:{SECRET}@h/db --trials 2",
     "paperboard sweep q --storage mysql://root:***@h/db --trials 2"),
    (f"sqlite:////tmp/r.db?password={SECRET}&timeout=5", "sqlite:////tmp/r.db?password=***&timeout=5"),
    (f"bad storage URL 'nosuchdb://u:{SECRET}@x': no", "bad storage URL 'nosuchdb://u:***@x': no"),
    ("sqlite:///results.db", "sqlite:///results.db"),
    ("journal:///tmp/sweeps.journal", "journal:///tmp/sweeps.journal"),
])
def test_redact(text, shown):
    assert redact(text) == shown


def paperboard(*argv, env, expect=0):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == expect, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout + proc.stderr


def assert_no_secret(texts: list[str], folders: list[Path]) -> int:
    """Fail naming the first output or file that holds the secret; returns how many files were read."""
    for i, text in enumerate(texts):
        assert SECRET not in text, f"output {i} shows the secret: {text[text.index(SECRET) - 200:][:400]}"
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"{path} holds the secret"
    return len(files)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_no_secret_in_outputs_files_rows_or_wandb(tmp_path):
    from tests.benchmarks.test_cli import write_board

    home = tmp_path / "home"
    env = {**os.environ, "PAPERBOARD_HOME": str(home), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    env.pop("PAPERBOARD_STORAGE", None)
    # SQLite ignores a password query argument, so the secret rides along without a database server
    url = f"sqlite:///{tmp_path / 'results.db'}?password={SECRET}"
    board = write_board(tmp_path, models={"pop": {}})
    outputs = [paperboard("run", board, "--storage", url, "--quiet", env=env)]
    outputs.append(paperboard("export", "--out", str(tmp_path / "runs"), "--storage", url, env=env))
    other = f"sqlite:///{tmp_path / 'imported.db'}?password={SECRET}"
    outputs.append(paperboard("import", str(tmp_path / "runs"), "--storage", other, env=env))
    sweep = ("sweep", "quickstart", "--model", "sasrec", "--trials", "1", "--max-epochs", "1", "--storage", url,
             "--data.num_users", "200")
    outputs.append(paperboard(*sweep, env=env))
    outputs.append(paperboard(*sweep, "--report", env=env))
    outputs.append(paperboard("run", "quickstart", "--models", "gru4rec", "--tuned", "--storage", url, env=env,
                              expect=2))
    outputs.append(paperboard("run", "quickstart", "--storage", f"nosuchdb://u:{SECRET}@x/db", env=env, expect=2))
    assert "results -> sqlite:///" in outputs[0] and "password=***" in outputs[0]
    assert "Run: paperboard sweep quickstart --model gru4rec" in outputs[-2] and "***" in outputs[-2]
    assert "bad storage URL 'nosuchdb://u:***@x/db'" in outputs[-1]
    assert list((home / "wandb").rglob("*.wandb")), "W&B wrote no offline run: the grep would prove nothing"
    assert assert_no_secret(outputs, [tmp_path]) > 10  # the databases' rows are in their files


PG_URL = os.environ.get("PAPERBOARD_TEST_POSTGRES_URL")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not PG_URL, reason="PAPERBOARD_TEST_POSTGRES_URL not set (see .ci/run)")
def test_no_secret_in_postgresql_rows(tmp_path):
    """The same on PostgreSQL: a board run and a sweep store nothing that holds the URL's password."""
    import sqlalchemy as sa

    from benchmarks.store import with_driver
    from tests.benchmarks.test_cli import write_board

    url = sa.engine.make_url(with_driver(PG_URL))
    secret_url = url.set(password=SECRET) if url.password != SECRET else url
    try:  # CI's server trusts loopback, so any password connects; otherwise the real one must be the secret
        sa.create_engine(secret_url).connect().close()
    except sa.exc.OperationalError:
        pytest.skip("the test server checks passwords; cannot plant a recognisable one")
    secret_url = secret_url.render_as_string(hide_password=False)
    env = {**os.environ, "PAPERBOARD_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    board = write_board(tmp_path, name=f"redact-{os.getpid()}", models={"pop": {}})
    outputs = [paperboard("run", board, "--storage", secret_url, "--quiet", env=env),
               paperboard("sweep", board, "--model", "pop", "--trials", "1", "--storage", secret_url, "--report",
                          env=env)]
    engine = sa.create_engine(secret_url)
    rows = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            rows += [str(tuple(r)) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]
    engine.dispose()
    assert any("paperboard sweep" in r for r in rows), "no stored command: the grep would prove nothing"
    assert assert_no_secret(outputs + rows, [tmp_path]) > 0
