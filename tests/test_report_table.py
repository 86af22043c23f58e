"""The accuracy table printed at the end of a run: one line a row in a log file (rich wraps at
80 columns off a terminal, which split every interval cell over two lines), the user's width
where they set one."""

from pbb.evaluation.report import print_table


def result(curriculum: str, split: str, accuracy: float) -> dict:
    return {"curriculum": curriculum, "mode": "cot", "split": split, "accuracy": accuracy,
            "ci_low": accuracy - 0.125, "ci_high": accuracy + 0.125, "n_behaviours": 18,
            "n_samples": 54}


SUMMARY = {"name": "claim_proactive_vs_control/002_seed-2",
           "results": [result("proactive", "eval", 0.352), result("proactive", "train", 0.133),
                       result("stage1_only", "eval", 0.274), result("stage1_only", "train", 0.25)]}


def printed(capsys) -> list[str]:
    print_table(SUMMARY)
    return capsys.readouterr().out.splitlines()


def test_a_row_stays_on_one_line_in_a_log_file(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = printed(capsys)
    row = next(line for line in lines if "│ proactive " in line)
    assert "35.2 [22.7, 47.7]" in row and "13.3 [0.8, 25.8]" in row and "18+18 behaviours" in row
    assert sum("│ stage1_only " in line for line in lines) == 1
    assert not any(line.strip("│ ").startswith("behaviours") for line in lines)


def test_a_width_the_user_set_stands(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    lines = printed(capsys)
    assert max(len(line) for line in lines) <= 60
    assert not any("35.2 [22.7, 47.7]" in line for line in lines)  # wrapped, as asked
