from __future__ import annotations

import logging

from cnnlearn import progress


def test_say_prints_one_line_to_stderr_only_when_verbose(capsys):
    progress.say("epoch 1/3 done")
    progress.say("hidden", verbose=0)
    out, err = capsys.readouterr()
    assert out == "" and err == "epoch 1/3 done\n"


def test_logger_lives_under_cnnlearn():
    log = progress.logger("deploy")
    assert isinstance(log, logging.Logger) and log.name == "cnnlearn.deploy"
