"""The LLM summarisation stages: the recurrent summariser visits blocks of 3 in order, each prompt carrying the
previous summary; its disk cache resumes a run killed midway without asking the model again for finished calls."""
from __future__ import annotations

import re

import pytest

from lightning_modules.mllmrec.pipeline import (DirectPreferenceSummariser, ItemSummariser,
                                                RecurrentPreferenceSummariser, SummaryCache)

TEXTS = [""] + [f"title{i}" for i in range(1, 11)]


class Killed(Exception):
    pass


class ScriptedClient:
    """A deterministic stand-in for an LLM: echoes which titles it was shown; can die after `die_after` calls."""

    name = "scripted"

    def __init__(self, die_after: int | None = None):
        self.prompts: list[str] = []
        self.die_after = die_after

    def complete(self, messages, *, max_tokens=256, temperature=0.0):
        if self.die_after is not None and len(self.prompts) >= self.die_after:
            raise Killed
        text = messages[-1]["content"]
        self.prompts.append(text)
        if text.startswith("Here is an item"):
            return "summary of " + text.rsplit("Item: ", 1)[1]
        shown = re.findall(r"^- (title\d+) --", text, flags=re.M)
        return "The user appears to have a preference for " + " ".join(shown) + f" (call {len(self.prompts)})"


def summariser(client, tmp_path, kind=RecurrentPreferenceSummariser):
    cache = SummaryCache(client, tmp_path)
    return kind(cache, ItemSummariser(cache, TEXTS)), cache


def preference_prompts(client):
    return [p for p in client.prompts if not p.startswith("Here is an item")]


def test_recurrent_summariser_visits_blocks_of_three_in_order(tmp_path):
    client = ScriptedClient()
    run, _ = summariser(client, tmp_path)
    final = run([1, 2, 3, 4, 5, 6, 7])
    prompts = preference_prompts(client)
    shown = [re.findall(r"^- (title\d+) --", p, flags=re.M) for p in prompts]
    assert shown == [["title1", "title2", "title3"], ["title4", "title5", "title6"], ["title7"]]
    assert "previous preference" not in prompts[0]
    for before, prompt in zip(prompts, prompts[1:]):  # each step reads the summary the step before wrote
        previous = "The user appears to have a preference for " + " ".join(re.findall(r"^- (title\d+) --", before,
                                                                                       flags=re.M))
        assert previous in prompt
    assert final.startswith("The user appears to have a preference for title7")
    assert "summary of title5" in prompts[1]  # items appear with their item summaries


def test_direct_summariser_is_one_prompt_over_the_whole_history(tmp_path):
    client = ScriptedClient()
    run, _ = summariser(client, tmp_path, DirectPreferenceSummariser)
    run([1, 2, 3, 4, 5])
    assert [re.findall(r"^- (title\d+) --", p, flags=re.M) for p in preference_prompts(client)] == \
        [["title1", "title2", "title3", "title4", "title5"]]


def test_cache_resumes_after_a_kill_without_repeating_finished_calls(tmp_path):
    history = [3, 1, 4, 10, 5, 9, 2]
    reference, _ = summariser(ScriptedClient(), tmp_path / "reference")
    expected = reference(history)

    dying = ScriptedClient(die_after=6)
    run, _ = summariser(dying, tmp_path / "resumed")
    with pytest.raises(Killed):
        run(history)
    assert not list((tmp_path / "resumed").rglob("*.tmp")), "no half-written entry is left"

    resumed_client = ScriptedClient()
    resumed_client.prompts = [None] * 6  # its call numbering continues where the killed run stopped
    run, cache = summariser(resumed_client, tmp_path / "resumed")
    assert run(history) == expected
    total = 7 + 3  # 7 item summaries, 3 preference steps; the kill came after 3 items, 1 step, 2 items
    assert cache.hits == 6 and cache.misses == total - 6

    again, cache = summariser(ScriptedClient(die_after=0), tmp_path / "resumed")
    assert again(history) == expected and cache.misses == 0  # everything is on disk now
