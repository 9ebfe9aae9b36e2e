"""Final-answer extraction from free-form solutions (pure string work, no SymPy).

`extract_answer(text)` tries, in order, and returns the first that applies:

1. the content of the LAST `\\boxed{...}` (or `\\fbox{...}`), braces balanced;
2. the LAST answer line: `A: ...`, `Answer: ...`, `Final answer: ...`, `#### ...`
   (GSM8K's marker), or "the answer is ...";
3. the whole text, when it is a single short line that already looks like a bare
   mathematical answer (`\\frac{1}{2}`, `x=3`, `(-oo, 2]`, `\\{1,2\\}`), so that a file of
   candidate answers needs no wrapping;
4. the LAST number in the text (`1,234`, `-3.5`, `7/8`).

`None` when nothing applies. The result is cleaned: surrounding `$` and a trailing full
stop are dropped, and `\\dfrac`/`\\tfrac` become `\\frac`.
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_LINE = re.compile(
    r"^[ \t]*(?:\*\*)?(?:[Ff]inal [Aa]nswer|FINAL ANSWER|[Aa]nswer|ANSWER|A)(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*(.+?)[ \t]*$|^[ \t]*####[ \t]*(.+?)[ \t]*$",
    re.MULTILINE,
)
_ANSWER_IS = re.compile(r"answer is[ \t]*:?[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# Words that may appear in a bare answer (function names, infinity spellings, units of angle).
_MATH_WORDS = {
    "sqrt",
    "pi",
    "oo",
    "inf",
    "infty",
    "infinity",
    "log",
    "ln",
    "sin",
    "cos",
    "tan",
    "exp",
    "frac",
    "dfrac",
    "tfrac",
    "cup",
    "cap",
    "le",
    "ge",
    "leq",
    "geq",
    "circ",
    "deg",
    "mod",
    "or",
    "and",
}


def _balanced(text: str, start: int) -> str | None:
    """The content of the brace group opening at text[start] == '{'."""
    depth = 0
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : j]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`; `\\boxed 5` (no braces) gives `5`."""
    matches = list(_BOXED.finditer(text))
    for m in reversed(matches):
        end = m.end()
        if end < len(text) and text[end] == "{":
            inner = _balanced(text, end)
            if inner is not None:
                return inner
        else:
            tok = re.match(r"[^\s$]+", text[end:])
            if tok:
                return tok.group(0)
    return None


def looks_bare(text: str) -> bool:
    """A single short line with no prose words: treat it as the answer itself."""
    s = text.strip()
    if not s or "\n" in s or len(s) > 120:
        return False
    words = re.findall(r"(?<!\\)\b[A-Za-z]{2,}\b", re.sub(r"\\[A-Za-z]+", " ", s))
    return all(w.lower() in _MATH_WORDS for w in words)


def clean(ans: str) -> str:
    s = ans.strip().rstrip(".").strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    s = s.rstrip(".").strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s


def extract_answer(text: str) -> str | None:
    """The final answer in `text` (see the module docstring for the order of rules)."""
    if text is None:
        return None
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return clean(boxed)
    lines = [m.group(1) or m.group(2) for m in _LINE.finditer(text)]
    if lines:
        return clean(lines[-1])
    said = _ANSWER_IS.findall(text)
    if said:
        return clean(said[-1])
    if looks_bare(text):
        return clean(text)
    nums = _NUMBER.findall(text)
    if nums:
        return nums[-1]
    return None
