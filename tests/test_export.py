"""``pbb export``'s files for a stage with replayed rows: each format keeps them told apart."""

import json

import yaml

from pbb import data
from pbb.interop.export import export


def test_openai_export_puts_an_rl_stages_replayed_rows_in_a_file_of_their_own(tmp_path):
    """The chat format has no field to tag a row by, and an RL stage's replayed rows are no
    prompts (an SFT term trains them beside GRPO): they go to ``<stage>.replay.jsonl``."""
    ds_dir = tmp_path / "set"
    data.save(data.generate("arithmetic", behaviours=8, demos=2, test_inputs=2,
                            eval_fraction=0.25, seed=0, progress=False), ds_dir)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"curricula": ["retroactive", "retroactive_sft"],
                                      "curriculum": {"activation_replay": 0.5}}))
    exported = {(s.curriculum, s.stage): s for s in
                export("openai", ds_dir, tmp_path / "x", config=config)}
    listed = json.loads((tmp_path / "x" / "stages.json").read_text())
    folder = tmp_path / "x" / "openai"

    def chats(path):
        return [json.loads(x)["messages"] for x in path.read_text().splitlines()]

    (rl,) = [s for s in exported.values() if s.trainer == "rl"]
    prompts = chats(folder / rl.curriculum / f"{rl.stage}.jsonl")
    replayed = chats(folder / rl.curriculum / f"{rl.stage}.replay.jsonl")
    assert len(replayed) == rl.replayed > 0 and len(prompts) == len(rl.rows) - rl.replayed
    assert {(m[0]["content"], m[1]["content"]) for m in replayed} == \
        {(r["prompt"][0]["content"], r["completion"][0]["content"])
         for r in rl.rows if r.get("replay")}
    # an SFT stage trains its replayed rows like any other: one file, all its rows
    sft = exported[("retroactive_sft", "activation_sft")]
    assert sft.replayed > 0 and len(chats(folder / sft.curriculum / f"{sft.stage}.jsonl")) == \
        len(sft.rows)
    assert not (folder / sft.curriculum / f"{sft.stage}.replay.jsonl").exists()
    assert {(s["curriculum"], s["stage"]): s["replayed"] for s in listed} == \
        {k: s.replayed for k, s in exported.items()}
