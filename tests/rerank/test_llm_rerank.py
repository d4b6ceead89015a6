"""The LLM rerankers: the answer parser (every valid format accepted, each invalid one re-prompted with its problem),
LLM4Rerank's node walk (Backward, the pool, the visit cap, always ending in Stop, the ablation flags), RankGPT's
windows and lenient reading, and the whole prompt -> HTTP -> parse -> rerank path against a real server in front
of a tiny random model (nonsense answers by design: the checks are on the protocol), cached so that a rerun asks
nothing; without a model a run is recorded as needing one."""
from __future__ import annotations

import json
import re

import lightning.pytorch as pl
import pytest
import torch

from contracts.batch import rerank as B
from datamodules.rerank import SyntheticRerank
from lightning_modules.llm import CachedClient, LLMUnavailable
from lightning_modules.llm.testing import shared_tiny_model
from lightning_modules.rerank.llm4rerank import (ACCURACY, BACKWARD, DIVERSITY, FAIRNESS, NODES, STOP,
                                                 InvalidAnswer, LLM4Rerank, parse_next_node, parse_rerank_answer)
from lightning_modules.rerank.rankgpt import RankGPT, receive_permutation, windows

# one test worker starts the tiny server (several CPU-seconds of imports) and every test that talks to it runs there
pytestmark = pytest.mark.xdist_group("tiny-llm-server")

IDS = [17, 4, 230, 9]


# ----- the parser -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, order, node", [
    ("[230, 17, 9, 4]; Diversity", [2, 0, 3, 1], DIVERSITY),
    ("[230,17,9,4];Stop", [2, 0, 3, 1], STOP),
    ("[ 4 , 17 , 230 , 9 ] ;  fairness", [1, 0, 2, 3], FAIRNESS),
    ("[4 17 230 9]; ACCURACY.", [1, 0, 2, 3], ACCURACY),
    ("[\n 9,\n 4,\n 17,\n 230\n];\nBackward", [3, 1, 0, 2], BACKWARD),
    ("['9', '4', \"17\", 230]; 'Stop'", [3, 1, 0, 2], STOP),
    ("Answer: [9, 4, 17, 230]; **Diversity**", [3, 1, 0, 2], DIVERSITY),
    ("[1, 2]; Stop is wrong, so: [9, 4, 17, 230]; `Stop` because it fits.", [3, 1, 0, 2], STOP),
])
def test_the_parser_accepts_every_valid_format(answer, order, node):
    assert parse_rerank_answer(answer, IDS, NODES) == (order, node)


@pytest.mark.parametrize("answer, problem", [
    ("230, 17, 9, 4; Stop", "not in the format"),
    ("[230, 17, 9, 4] Stop", "not in the format"),
    ("", "not in the format"),
    ("[230, 17, nine, 4]; Stop", "'nine' in the list is not an item ID"),
    ("[230, 17, 9, 5]; Stop", "ID 5 is not among the candidates"),
    ("[230, 17, 9, 9]; Stop", "ID 9 appears more than once"),
    ("[230, 17, 9]; Stop", "missing: 4"),
    ("[230, 17, 9, 4, 4]; Stop", "ID 4 appears more than once"),
    ("[230, 17, 9, 4]; Novelty", "'Novelty' is not a node"),
    ("[230, 17, 9, 4]; next_node", "'next_node' is not a node"),
])
def test_the_parser_rejects_each_invalid_answer_naming_the_problem(answer, problem):
    with pytest.raises(InvalidAnswer, match=re.escape(problem)):
        parse_rerank_answer(answer, IDS, NODES)


def test_a_node_outside_the_graph_is_invalid_and_backward_answers_name_one_node():
    with pytest.raises(InvalidAnswer, match="one of Accuracy, Stop"):
        parse_rerank_answer("[230, 17, 9, 4]; Diversity", IDS, (ACCURACY, STOP))
    assert parse_next_node("Fairness", NODES) == FAIRNESS
    assert parse_next_node("  'stop'. ", NODES) == STOP
    assert parse_next_node("The next node is Diversity.", NODES) == DIVERSITY
    with pytest.raises(InvalidAnswer, match="several nodes"):
        parse_next_node("Diversity or Fairness", NODES)
    with pytest.raises(InvalidAnswer, match="'Novelty' is not a node"):
        parse_next_node("Novelty", NODES)
    with pytest.raises(InvalidAnswer, match="names no node"):
        parse_next_node("I am not sure what to do", NODES)


# ----- the walk, with a scripted model --------------------------------------------------------------------------------
class Scripted:
    """An LLMClient whose answer is a function of the conversation; it keeps every conversation it was sent."""

    name = "scripted"

    def __init__(self, answer):
        self.answer, self.sent = answer, []

    def complete(self, messages, *, max_tokens=256, temperature=0.0):
        self.sent.append(messages)
        return self.answer(messages)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_of(messages) -> str:
    return re.search(r"Current node: (\w+)", messages[0]["content"]).group(1)


@pytest.fixture(scope="module")
def dm():
    data = SyntheticRerank(num_users=40, num_items=40, num_genres=4, sequence_len=10, num_candidates=10,
                           history_len=4, ranker_epochs=1, eval_batch_size=8)
    data.prepare_data()
    data.setup("fit")
    return data


def batch_of(dm, n=3) -> dict:
    return dm.test_set.__getitems__(list(range(n)))


def scripted_model(dm, tmp_path, answer, cls=LLM4Rerank, **kwargs):
    model = cls(**dm.model_kwargs(), llm_cache=str(tmp_path), **kwargs)
    script = Scripted(answer)
    model._client = CachedClient(script, tmp_path)
    return model, script


def answer_with(order_of, next_of):
    """An aspect node answers order_of(node, ids) and next_of(node); Backward answers next_of(Backward)."""
    def answer(messages):
        node = node_of(messages)
        ids = [int(i) for i in re.findall(r"- ID (\d+):", messages[0]["content"])]
        return next_of(node) if node == BACKWARD else f"[{', '.join(map(str, order_of(node, ids)))}]; {next_of(node)}"
    return answer


def test_walk_with_backward_pops_the_pool_and_ends_in_stop(dm, tmp_path):
    orders = {ACCURACY: lambda ids: ids[::-1], DIVERSITY: lambda ids: ids[1:] + ids[:1],
              FAIRNESS: lambda ids: ids[2:] + ids[:2]}
    nexts = {ACCURACY: DIVERSITY, DIVERSITY: BACKWARD, BACKWARD: FAIRNESS, FAIRNESS: STOP}
    model, script = scripted_model(dm, tmp_path, answer_with(lambda n, ids: orders[n](ids), nexts.get))
    batch = batch_of(dm, 2)
    order = model.rerank(batch)
    assert model.last_paths == [[ACCURACY, DIVERSITY, BACKWARD, FAIRNESS, STOP]] * 2
    n = batch[B.CANDIDATES].shape[1]
    assert order.tolist() == [list(range(2, n)) + [0, 1]] * 2  # the Fairness list, the pool's last entry
    fairness_prompt = [m for m in script.sent if node_of(m) == FAIRNESS][0][0]["content"]
    assert "Focus: Accuracy. Reranking Result:" in fairness_prompt
    assert "Focus: Diversity" not in fairness_prompt  # Backward removed it from the pool
    assert all("Goal: Overall performance" in m[0]["content"] for m in script.sent)


@pytest.mark.parametrize("cap", [1, 3, 5])
def test_the_visit_cap_forces_stop(dm, tmp_path, cap):
    model, script = scripted_model(dm, tmp_path, answer_with(lambda n, ids: ids, lambda n: ACCURACY),
                                   max_visits=cap)
    model.rerank(batch_of(dm, 1))
    assert model.last_paths == [[ACCURACY] * cap + [STOP]] and len(script.sent) == cap


def test_an_invalid_answer_is_re_prompted_with_its_problem(dm, tmp_path):
    def answer(messages):
        ids = [int(i) for i in re.findall(r"- ID (\d+):", messages[0]["content"])]
        if len(messages) == 1:
            return f"[{', '.join(map(str, ids[:-1]))}]; Stop"  # one candidate missing
        return f"[{', '.join(map(str, ids[::-1]))}]; Stop"
    model, script = scripted_model(dm, tmp_path, answer)
    batch = batch_of(dm, 1)
    order = model.rerank(batch)
    n = batch[B.CANDIDATES].shape[1]
    assert order.tolist() == [list(range(n))[::-1]]
    retry = script.sent[1]
    assert [m["role"] for m in retry] == ["user", "assistant", "user"]
    assert "missing" in retry[2]["content"] and retry[1]["content"] == script.answer(script.sent[0])


def test_concurrent_lists_give_the_same_orders_and_counts(dm, tmp_path):
    nexts = {ACCURACY: DIVERSITY, DIVERSITY: STOP}
    answer = answer_with(lambda n, ids: ids[::-1] if n == ACCURACY else ids[1:] + ids[:1], nexts.get)
    batch = batch_of(dm, 6)
    serial, script = scripted_model(dm, tmp_path / "serial", answer)
    threaded, threaded_script = scripted_model(dm, tmp_path / "threads", answer, llm_workers=3)
    assert torch.equal(serial.rerank(batch), threaded.rerank(batch))
    assert len(threaded_script.sent) == len(script.sent) == 12 and threaded.client.misses == 12
    assert threaded.last_paths == [[ACCURACY, DIVERSITY, STOP]] * 6


def test_after_max_reprompts_the_node_keeps_the_list_and_the_walk_stops(dm, tmp_path):
    model, script = scripted_model(dm, tmp_path, lambda messages: "I like the first one.", max_reprompts=2)
    batch = batch_of(dm, 2)
    stats = dict.fromkeys(("llm_calls", "invalid_answers", "fallbacks", "node_visits"), 0)
    order = model.rerank_list(batch, 0, stats)
    assert order == list(range(batch[B.CANDIDATES].shape[1]))  # the ranker's order
    assert stats == {"llm_calls": 3, "invalid_answers": 3, "fallbacks": 1, "node_visits": 1}
    assert model.last_paths == [[ACCURACY, STOP]]


def test_ablation_flags_drop_the_pool_fix_the_path_and_restrict_the_nodes(dm, tmp_path):
    model, script = scripted_model(dm, tmp_path / "h", answer_with(lambda n, ids: ids, lambda n: ACCURACY),
                                   pool=False, max_visits=2)
    model.rerank(batch_of(dm, 1))
    assert all("Reranking history" not in m[0]["content"] for m in script.sent)
    model, script = scripted_model(dm, tmp_path / "ar", answer_with(lambda n, ids: ids, lambda n: STOP),
                                   fixed_path="accuracy,accuracy")
    model.rerank(batch_of(dm, 1))
    assert model.last_paths == [[ACCURACY, ACCURACY, STOP]]
    model, script = scripted_model(dm, tmp_path / "n", answer_with(lambda n, ids: ids, lambda n: DIVERSITY),
                                   other_nodes=False, max_reprompts=0)
    model.rerank(batch_of(dm, 1))
    assert "- Diversity" not in script.sent[0][0]["content"]
    assert model.last_paths == [[ACCURACY, STOP]]  # Diversity is not a node of this graph: invalid, fallback


def test_focus_names_a_goal_or_is_one():
    sizes = dict(num_users=3, num_items=19, num_genres=2, num_candidates=10, history_len=2)
    assert "diversity" in LLM4Rerank(**sizes, focus="diversity").goal
    assert LLM4Rerank(**sizes, focus="accuracy first, then fairness").goal == "accuracy first, then fairness"
    with pytest.raises(ValueError, match="fixed_path.*'Novelty'"):
        LLM4Rerank(**sizes, fixed_path="accuracy,novelty")
    with pytest.raises(ValueError, match="max_visits"):
        LLM4Rerank(**sizes, max_visits=0)


# ----- RankGPT --------------------------------------------------------------------------------------------------------
def test_rankgpt_reads_answers_as_the_official_code_and_slides_from_the_bottom():
    assert receive_permutation("[3] > [1] > [3] > [9] > [2]", 4) == ([2, 0, 1, 3], 3)
    assert receive_permutation("no idea", 3) == ([0, 1, 2], 0)
    assert windows(20, 20, 10) == [(0, 20)]
    assert windows(30, 20, 10) == [(10, 30), (0, 20)]
    assert windows(35, 20, 10) == [(15, 35), (5, 25), (0, 15)]


def test_rankgpt_prompt_is_the_official_conversation(dm, tmp_path):
    model, script = scripted_model(dm, tmp_path, lambda m: "[2] > [1]", cls=RankGPT)
    batch = batch_of(dm, 1)
    order = model.rerank(batch)
    n = batch[B.CANDIDATES].shape[1]
    assert order.tolist() == [[1, 0, *range(2, n)]]
    sent = script.sent[0]
    assert sent[0]["content"].startswith("You are RankGPT") and len(sent) == 3 + 2 * n + 1
    assert sent[3]["content"].startswith("[1] ") and sent[4]["content"] == "Received movie [1]."
    assert "The output format should be [] > []" in sent[-1]["content"]


# ----- the real path: prompt -> HTTP -> tiny model -> parse -> rerank -------------------------------------------------
@pytest.fixture(scope="module")
def served():
    server = shared_tiny_model()
    server.set_faults()
    return server


def served_count(served) -> int:
    import urllib.request

    with urllib.request.urlopen(served.base_url.rsplit("/v1", 1)[0] + "/health", timeout=30) as response:
        return json.loads(response.read())["served"]


@pytest.mark.parametrize("cls", [LLM4Rerank, RankGPT])
def test_served_tiny_model_end_to_end_and_a_rerun_asks_nothing(cls, dm, served, tmp_path):
    def test_once():
        model = cls(**dm.model_kwargs(), llm=served, llm_cache=str(tmp_path), max_tokens=24,
                    **({"max_reprompts": 1} if cls is LLM4Rerank else {}))
        trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                             limit_test_batches=1, accelerator="cpu", devices=1)
        return trainer.test(model, datamodule=dm, verbose=False)[0], model

    before = served_count(served)
    first, model = test_once()  # the base checks each order is a permutation of the candidates
    asked = served_count(served) - before
    lists = 8
    assert asked == model.client.misses and asked >= lists
    assert first["test/cache_hit_rate"] == 0.0
    if cls is LLM4Rerank:  # random bytes never parse: every list re-prompts once, then keeps GMF's order
        assert first["test/llm_calls_per_user"] == 2.0 and first["test/fallback_rate"] == 1.0
        assert first["test/invalid_answer_rate"] == 1.0 and all(p == [ACCURACY, STOP] for p in model.last_paths)
    second, again = test_once()
    assert served_count(served) - before == asked  # everything came from the cache
    assert second["test/cache_hit_rate"] == 1.0 and again.client.misses == 0
    assert {k: v for k, v in second.items() if "seconds" not in k and "cache" not in k} == \
        {k: v for k, v in first.items() if "seconds" not in k and "cache" not in k}


def test_timeouts_and_server_errors_surface_as_unavailable(dm, served, tmp_path):
    model = LLM4Rerank(**dm.model_kwargs(), llm=served, llm_cache=str(tmp_path), llm_timeout=0.3, llm_retries=1,
                       max_tokens=8)
    served.set_faults(delay=0.8)
    try:
        with pytest.raises(LLMUnavailable, match="after 2 tries"):
            model.rerank(batch_of(dm, 1))
    finally:
        served.set_faults()
    assert len(model.client) == 0  # nothing half-written


def test_without_a_model_the_run_is_recorded_as_needing_one(tmp_path, monkeypatch):
    """The runner's record, the rendered board and the claim verdicts of a row that ran without an LLM."""
    import yaml

    from benchmarks.boards import load_board
    from benchmarks.claims import _readiness, row_stats
    from benchmarks.render import render_markdown
    from benchmarks.runner import RunSpec, execute

    monkeypatch.delenv("PAPERBOARD_LLM", raising=False)
    monkeypatch.setenv("PAPERBOARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    board_path = tmp_path / "llm-board.yaml"
    board_path.write_text(yaml.safe_dump({
        "name": "llm-test-board", "family": "rerank", "title": "LLM rows without a model",
        "dataset": "synthetic-rerank",
        "dataset_args": dict(num_users=30, num_items=40, num_genres=4, sequence_len=10, num_candidates=10,
                             history_len=4, ranker_epochs=1),
        "protocol": ["test"], "primary_metric": "ndcg@10", "metrics": ["hr@10", "ndcg@10", "mad"],
        "models": {"gmf": {}, "llm4rerank": {},
                   "llm4rerank@gone": {"llm": f"http://127.0.0.1:{free_port()}/v1#model=m", "llm_retries": 0}},
        "seeds": [0, 1], "trainer": {"max_epochs": 1}}))
    # a server that is not there fails the first list, inside Lightning's validation loop: still needs_llm
    gone = execute(RunSpec(board=str(board_path), model="llm4rerank@gone", seed=0, data_dir=str(tmp_path / "data")))
    assert gone["status"] == "needs_llm" and "did not answer" in gone["error"]
    record = execute(RunSpec(board=str(board_path), model="llm4rerank", seed=0, data_dir=str(tmp_path / "data")))
    assert record["status"] == "needs_llm" and "PAPERBOARD_LLM" in record["error"]
    board = load_board(str(board_path))
    monkeypatch.setattr("benchmarks.render.claims_section", lambda board, records: [])  # no paper claims this board
    page = render_markdown(board, [record])
    assert "| llm4rerank | default | 0 of 2 | needs an LLM | needs an LLM | needs an LLM |" in page
    assert "Failed runs" not in page
    stats = row_stats(board, [record], "llm4rerank", "ndcg@10")
    assert stats.needs_llm and _readiness(board, [stats], None, 1.0).startswith("needs an LLM")
    # with PAPERBOARD_LLM set (`paperboard run --llm`), the row's recorded config names the model it used
    monkeypatch.setenv("PAPERBOARD_LLM", "http://127.0.0.1:9/v1#model=m")
    from benchmarks.runner import resolve

    assert resolve(board, RunSpec(board=str(board_path), model="llm4rerank", seed=0))[3]["llm"] == \
        "http://127.0.0.1:9/v1#model=m"
    assert "llm" not in resolve(board, RunSpec(board=str(board_path), model="gmf", seed=0))[3]


@pytest.mark.slow
def test_a_server_killed_mid_board_leaves_the_cache_whole_and_a_rerun_resumes(dm, tmp_path):
    from lightning_modules.llm.testing import serve_tiny_model

    batch = dm.test_set.__getitems__(list(range(6)))
    with serve_tiny_model(seed=1) as first:
        model = LLM4Rerank(**dm.model_kwargs(), llm=first, llm_cache=str(tmp_path), max_tokens=24,
                           max_reprompts=1, llm_retries=0)
        done = model.rerank(dm.test_set.__getitems__(list(range(3))))  # the first three lists
        entries = len(model.client)
        first.kill()
        with pytest.raises(LLMUnavailable):
            model.rerank(batch)  # lists 1-3 from the cache, list 4 needs the dead server
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == entries and all(json.loads(f.read_text())["answer"] is not None for f in files)
    assert not list(tmp_path.rglob(".*.tmp"))
    with serve_tiny_model(seed=1) as second:  # the same model on a new port: the cache still answers
        again = LLM4Rerank(**dm.model_kwargs(), llm=second, llm_cache=str(tmp_path), max_tokens=24,
                           max_reprompts=1)
        order = again.rerank(batch)
    assert again.client.hits == entries and again.client.misses > 0
    assert torch.equal(order[:3], done)
