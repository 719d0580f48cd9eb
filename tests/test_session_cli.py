"""``edgechat -p ... --session FILE``: scripted multi-turn use without re-prefill, as the real console
script. Oracle: the same second turn on a fresh conversation given whole (the text must be the one the
restored run writes; the restored run feeds only the new prompt's tokens)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EDGECHAT = str(Path(sys.executable).parent / "edgechat")
BASE = ["--threads", "2", "--ctx", "512", "--max-tokens", "12", "--temp", "0", "--json"]
FIRST = "List three rivers of Europe and say one thing about each of them."
SECOND = "Which one is the longest?"


def run(args, timeout=180):
    r = subprocess.run([EDGECHAT, *args], capture_output=True, timeout=timeout, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def test_session_restores_and_feeds_only_the_new_prompt(tmp_path):
    s = tmp_path / "chat.npz"
    one, _ = run(["-p", FIRST, "--session", str(s), *BASE])
    assert one["cache"]["restored"] is False and s.is_file()
    two, err = run(["-p", SECOND, "--session", str(s), *BASE])
    assert two["cache"]["restored"] is True and err == ""
    assert two["tokens"]["prompt"] < 20 < one["tokens"]["prompt"]
    assert two["cache"]["used"] > one["cache"]["used"]
    assert two["timings"]["ttft_s"] >= two["timings"]["restore_s"] > 0
    # the same conversation fed whole by the runtime gives the same reply
    from edgechat.models.resolve import resolve
    from edgechat.runtime import load
    e = load(resolve(None), threads=2, ctx=512)
    msgs = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": one["text"]},
            {"role": "user", "content": SECOND}]
    *_, done = e.chat(msgs, temp=0, max_tokens=12)
    e.close()
    assert two["text"] == done.text


def test_damaged_session_is_a_note_and_a_fresh_run(tmp_path):
    s = tmp_path / "chat.npz"
    run(["-p", FIRST, "--session", str(s), *BASE])
    s.write_bytes(s.read_bytes()[:1000])                       # truncated
    got, err = run(["-p", SECOND, "--session", str(s), *BASE])
    fresh, _ = run(["-p", SECOND, *BASE])
    assert got["cache"]["restored"] is False
    assert err.count("\n") == 1 and "session" in err and "starting over" in err
    assert got["text"] == fresh["text"] and got["tokens"] == fresh["tokens"]
    again, _ = run(["-p", SECOND, "--session", str(s), *BASE])  # the file was replaced by a good one
    assert again["cache"]["restored"] is True


def test_other_kv_type_session_is_refused(tmp_path):
    s = tmp_path / "chat.npz"
    run(["-p", FIRST, "--session", str(s), *BASE])
    got, err = run(["-p", SECOND, "--session", str(s), "--kv-type", "f16", *BASE])
    assert got["cache"]["restored"] is False and "kv_type q8_0, now f16" in err   # auto on native: q8_0
    assert got["cache"]["kv_type"] == "f16"
