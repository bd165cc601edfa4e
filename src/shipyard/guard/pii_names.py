"""Person names, found by name lists and the shape of the text around them.

No NER model can be installed here (spaCy's are not on the registry we reach), and the anchor
(Presidio with spaCy's small model) found only 62% of names anyway. What we have instead: the
first names of ``gender-guesser`` (about 33,000 from 50 countries, Jörg Michael's list) and the
US census first names and 88,000 surnames shipped in ``names``. A run of capitalised words is a
name when it starts with a known first name (or an honorific, or an initial) and has a surname
after it; a single word is a name only after an honorific or a phrase such as "my name is".
Unknown surnames after a known first name are accepted (most of the world's surnames are in
no list), so the first-name list and a stop list of capitalised English words carry precision.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Iterator

import gender_guesser
import names as census_names

from shipyard.guard.base import Finding


def words(text: str) -> frozenset[str]:
    """The words of a list written as text (lists of names read better as prose)."""
    return frozenset(text.split())


_HONORIFIC = words(
    """
    mr mrs ms miss mx dr prof sir madam madame dame lady lord mme mlle herr frau sr sra
    srta dona don fr rev hon
    """
)
_PARTICLES = words(
    """
    van von der den de del della di da dos das du le la al el bin ibn ter ten y
    """
)
_STOP = words(
    """
    one two three
    a an the and or but if of to in on at by for with from as is are was were be been am i
    you he she it we they me my your his her its our their this that these those there
    here what which who whom whose when where why how all any each every some no not yes
    please thank thanks hello hi hey dear regards best kind sincerely cheers good great
    new old first last next dear date name phone email mail address card bank account
    number street road avenue city state country mobile desk fax website personal info
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday today tomorrow could would
    should will can shall might must do does did have has had get got make made let see
    call send go come take give tell ask need want like love summer autumn winter spring
    christmas easter north south east west central united kingdom america american english
    french german spanish chinese japanese indian university college school hospital
    company inc ltd llc corp group service services support team customer client user
    admin manager office department api http https server model agent tool run task key
    token secret error note warning example test true false none null ok okay also just
    only even still then than so very much more most many such own same other another both
    either neither after before during while since until about above below over under
    again further once why because sent per via amount price total order invoice payment
    credit debit visa master apt suite unit box floor building
    """
)
_EMAIL_LOCAL = re.compile(r"[\w.%+-]+(?=@)")
_LETTERS = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "þ": "th", "ß": "ss", "æ": "ae", "œ": "oe", "ð": "d"}
)
_ORGANISATION = words(
    """
    inc ltd llc plc se sa ag gmbh corp corporation company co group limited fund etf
    holdings partners bank trust university institute foundation association bv nv ab oy
    as asa spa srl kg industries technologies systems solutions services international
    """
)
"""Words that make a run of capitalised words a company, not a person."""
_PLACE_CUE = re.compile(r"\b(?:in|at|near|visit(?:ing)?)\s*$", re.I)
_WORD_NAMES = words(
    """
    will grant mark bill rose june may april august summer hope joy faith grace chase art
    don guy jean christian sky river hunter page lane dean king major rich frank earl
    sterling penny ruby pearl crystal amber dawn eve gay sunny autumn violet iris lily
    daisy holly ivy jade destiny harmony unity patience prudence honor justice star angel
    bishop cliff glen heath miles wade wolf drew lance rod pat sue
    """
)
"""First names that are also English words: a surname must follow ("Mark Gordon")."""
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['\u2019-][^\W\d_])*\.?")
_CUE = re.compile(
    r"\b(?:(?:my|his|her|their|your|the)\s+name\s+is|name\s*:|i\s+am|i'm|this\s+is|signed|dear|"
    r"hi|hello|attn:?|regards,?|sincerely,?|mr|mrs|ms|miss|mx|dr|prof)\.?\s*$",
    re.I,
)
"""Words after which one capitalised word is a name whatever it is ("my name is Qoqa")."""
_WEAK_CUE = re.compile(r"\b(?:with|from|by|to|for|contact|call|ask|tell|cc:?|and)\s*$", re.I)
"""Words after which one capitalised word is a name if it is a known first name."""


@functools.cache
def _lists() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), lowercased; read once per process (about 0.2 s)."""
    first: set[str] = set()
    path = os.path.join(os.path.dirname(gender_guesser.__file__), "data", "nam_dict.txt")
    with open(path, encoding="iso8859-1") as lines:
        for line in lines:
            if line.startswith("#") or len(line) < 30:
                continue
            word = line[3:29].strip()
            if word.isalpha() and len(word) > 1:
                first.add(word.lower())
    last: set[str] = set()
    folder = os.path.dirname(census_names.__file__)
    for file, into in (
        ("dist.male.first", first),
        ("dist.female.first", first),
        ("dist.all.last", last),
    ):
        with open(os.path.join(folder, file), encoding="ascii") as lines:
            into.update(line.split(" ", 1)[0].lower() for line in lines if line.strip())
    return frozenset(first - _STOP), frozenset(last - _STOP)


def _is_cap(word: str) -> bool:
    """Capitalised, or an initial; not an acronym ("ISO", "UTC") nor a word in capitals."""
    stripped = word.rstrip(".")
    return word[0].isupper() and (len(stripped) == 1 or not stripped.isupper())


def _joins(previous: str, gap: str) -> bool:
    """Whether a word after ``previous`` and ``gap`` continues the same name: one space, and a
    full stop only after an initial or an honorific ("J. Smith", "Dr. Ng"), not a sentence end."""
    if gap != " ":
        return False
    return not previous.endswith(".") or len(previous) == 2 or previous[:-1].lower() in _HONORIFIC


def _runs(text: str) -> Iterator[list[re.Match[str]]]:
    """Maximal runs of capitalised words (with particles and initials) joined by one space."""
    run: list[re.Match[str]] = []
    for m in _WORD.finditer(text):
        word = m.group()
        joined = bool(run) and _joins(run[-1].group(), text[run[-1].end() : m.start()])
        if run and not joined:
            yield run
            run = []
        if _is_cap(word) or (run and word.lower().rstrip(".") in _PARTICLES):
            run.append(m)
        elif run:
            yield run
            run = []
    if run:
        yield run


def fold(word: str) -> str:
    """Lowercase without accents ("Elżbieta" → "elzbieta"): the lists spell names in ASCII."""
    decomposed = unicodedata.normalize("NFKD", word.lower().translate(_LETTERS))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _known(word: str, names: frozenset[str]) -> bool:
    """In the list, accents folded; a double-barrelled name when either half is."""
    if word in names or fold(word) in names:
        return True
    return "-" in word and any(fold(part) in names for part in word.split("-") if part)


def _trim(words: list[str]) -> tuple[int, int, bool]:
    """The run's name part ``[i, end)`` without leading stop words and honorifics or trailing
    particles, and whether an honorific came first."""
    i, honorific = 0, False
    while i < len(words) and (words[i] in _STOP or words[i] in _HONORIFIC):
        honorific = honorific or words[i] in _HONORIFIC
        i += 1
    end = len(words)
    while end > i and (words[end - 1] in _PARTICLES or words[end - 1] in _STOP):
        end -= 1
    return i, end, honorific


def _person(
    run: list[re.Match[str]], text: str, first: frozenset[str], last: frozenset[str], emails: str
) -> tuple[int, int] | None:
    """The name's span in a run of capitalised words, if the run holds one."""
    words = [m.group().rstrip(".").lower() for m in run]
    i, end, honorific = _trim(words)
    if end <= i or end - i > 4:
        return None
    body, names = run[i:end], words[i:end]
    tail = body[-1].group()
    span = body[0].start(), body[-1].end() - (tail.endswith(".") and len(tail) > 2)
    before = max(0, body[0].start() - 24), body[0].start()
    if honorific or _CUE.search(text, *before):
        return span
    if (words[end:] and words[end] in _ORGANISATION) or _ORGANISATION.intersection(names):
        return None  # "Victory Nickel Inc.", "Groupe Guillin SA"
    if _PLACE_CUE.search(text, *before):
        # "I am in Mechanics Bay": after "in" or "at" a name needs both halves known.
        known = _known(names[0], first) and _known(names[-1], last)
        return span if known and len(names) > 1 else None
    if len(names) == 1:
        known = not body[0].group().isupper() and _known(names[0], first)
        return span if known and _WEAK_CUE.search(text, *before) else None
    return span if _looks_like_name(names, first, last, emails) else None


def _looks_like_name(
    names: list[str], first: frozenset[str], last: frozenset[str], emails: str
) -> bool:
    """Two to four capitalised words with no cue before them."""
    if len(names[0]) == 1:
        return False
    if len(names) == 3 and len(names[1]) == 1:
        return True  # "Nobuto N Umeta": first name, initial, surname
    if names[0] in _WORD_NAMES:
        return _known(names[-1], last)  # "Mark Gordon", not "Grant Access"
    if _known(names[0], first) or (_known(names[-1], last) and len(names) <= 3):
        return True
    # "Doku Aslakhanov ... DokuAslakhanov@cuvox.de": a signature with its address
    return all(fold(n) in emails for n in names if len(n) > 1)


def find_names(text: str) -> Iterator[Finding]:
    """PERSON findings in ``text``."""
    first, last = _lists()
    emails = " ".join(fold(m.group()) for m in _EMAIL_LOCAL.finditer(text)) if "@" in text else ""
    for run in _runs(text):
        span = _person(run, text, first, last, emails)
        if span is not None:
            yield Finding(span[0], span[1], "PERSON", 0.7)
