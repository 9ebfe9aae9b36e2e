"""How answers are judged. Every verdict is structured: correct, reward, reason."""

from scalinglab.verify.verdict import Verdict

__all__ = ["Verdict"]
