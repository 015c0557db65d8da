"""Fixtures of the zoo tests: model factories written to a file, as users pass them (`path.py:fn`)."""

from __future__ import annotations

import textwrap

import pytest

from rfgraph import zoo

_FACTORIES = textwrap.dedent(
    '''
    import torch.nn as nn


    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return x
            return -x


    class Tokens(nn.Module):
        """TNT-like: 8x8 patches unfolded into tokens (no feature map ever), a linear, then the tokens
        mixed by a softmax over them (global)."""

        def __init__(self):
            super().__init__()
            self.unfold, self.proj = nn.Unfold(8, stride=8), nn.Linear(3 * 64, 4)

        def forward(self, x):
            return self.proj(self.unfold(x).transpose(1, 2)).softmax(1)


    def tokens():
        return Tokens()


    def tiny():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))


    def tiny2():
        return nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.Conv2d(4, 4, 3))


    def deep():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, stride=2))


    def branchy():
        return Branchy()


    def broken():
        raise RuntimeError("boom")


    def slow():
        import time

        time.sleep(120)


    def dies():
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    '''
)


@pytest.fixture()
def factories(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(_FACTORIES)

    def model(fn, **kw):
        return zoo.ZooModel(fn, f"{path}:{fn}", input_shape=(1, 3, 32, 32), **kw)

    return model
