"""Street addresses: a street with its house number, then whatever city, region, postcode and
country follow it on the same lines.

No offline library finds addresses in free text across countries (``usaddress`` parses a
string already known to be a US address). A street is recognised by its shape in the world's
common formats: house number first with a street-type word ("12 Baker Street", "4 rue de la
Paix"), or a street name then the house number ("Hauptstraße 5", "Via Roma 12", "Storgatan
3"); US military addresses (PSC/Unit, Box, APO/FPO/DPO) are their own pattern. From the street
the span extends over capitalised words, apartment and suite numbers, two-letter regions and
postcodes, across commas and line breaks, and stops at a lowercase word or a sentence's end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from shipyard.guard.base import Finding


def words(text: str) -> frozenset[str]:
    """The words of a list written as text (lists of names read better as prose)."""
    return frozenset(text.split())


_USPS = (
    "alley annex arcade bayou beach bend bluff bluffs bottom branch bridge brook brooks burg "
    "burgs bypass camp canyon cape causeway center centers circles cliff cliffs club common "
    "commons corner corners course courts cove coves creek crest crossing crossroad curve dale "
    "dam divide estate estates expressway extension falls ferry field fields flat flats ford "
    "fords forest forge forges fork forks fort freeway garden gateway glen glens green greens "
    "groves harbor harbors haven heights highway hills hollow inlet island islands isle "
    "junction junctions key keys knoll knolls lake lakes landing lanes light lights lock locks "
    "lodge manor manors meadow meadows mill mills mission motorway mount mountain mountains "
    "neck orchard oval overpass parks parkways pass passage pine pines plain plains plazas "
    "port ports prairie ramp ranch rapid rapids ridges river roads route shoal shoals shore "
    "shores skyway spring springs spur spurs squares station stravenue stream streets summit "
    "throughway trace track trafficway tunnel turnpike underpass union valley valleys viaduct "
    "views village villages ville vista walks wall ways well wells"
)
"""The street suffixes of the US Postal Service's list (Publication 28, appendix C)."""
_TYPES = (
    r"street|st|road|rd|avenue|ave|av|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|"
    r"square|sq|terrace|way|parkway|pkwy|highway|hwy|circle|cir|crescent|close|grove|row|"
    r"mews|walk|hill|gardens|park|trail|trl|loop|alley|plaza|path|pike|point|ridge|view|"
    + "|".join(_USPS.split())
    + r"|plads|gate|gatve|út|kapu|plac|aleja|rodovia|borgo|contrada|conjunto|trecho|fazenda|"
    r"ladeira|camino|carrer|paseo|ronda|travesía|núcleo|quinta|chemin|impasse|allée|quai|"
    r"place|cours|route|dreef|kade|steeg|ring|damm|ufer|pfad|"
    r"rue|via|viale|vicolo|piazza|corso|strada|calle|avenida|rua|travessa|largo|praça|"
    r"ulica|ul|utca|allee|platz|weg|gasse|straße|strasse|straat|laan|plein|gata|gatan|"
    r"vägen|veien|vej|vei|gade|katu|tie|odos|οδός|leoforos|λεωφόρος"
)
_SUFFIX = (
    r"(?:straße|strasse|str\.|gasse|weg|allee|platz|straat|laan|gracht|gata|gatan|vägen|"
    r"veien|vegen|vej|vei|gade|katu|tie|utca|ulica|vegur|vegi|gränd|torget|stræde|str|ring|"
    r"damm|ufer|dreef|kade|boulevard|plein|singel|markt)"
)
_CAP = r"[^\W\d_][\w'\u2019.-]*"
_WORDS = rf"(?:{_CAP})(?:[ ](?:{_CAP})){{0,4}}"

_NUMBER_FIRST = re.compile(
    rf"(?<![\w.,/-])\d{{1,6}}[A-Za-z]?(?:[/-]\d{{1,4}})?(?:[ ]\d{{1,4}})?,?[ ](?P<w>{_WORDS})"
    r"(?:,?[ ](?P<n>\d{1,5}(?:[/-]\d{1,4})?[A-Za-z]?)(?![\w.,/-]\d))?(?![\w])"
)
"""A house number, then up to five words, then maybe a number ("12 Baker Street", "07569
Mjövattnet 43"); which of these are streets is decided in Python (a regex alternation of
every street type at every word was most of the detector's time)."""
_STREET_FIRST = re.compile(
    rf"(?<![\w])(?P<w>{_WORDS}),?[ ](?P<n>\d{{1,5}}(?:[/-]\d{{1,4}})?[A-Za-z]?)(?![\w/-])"
)
"""Up to five words, then a house number ("Via Roma 12", "Hauptstraße 5")."""
_CORNER = re.compile(
    rf"(?<![\w])(?:[Tt]he )?corner of (?:{_CAP}[ ])?(?:\d+[ ])?(?:{_WORDS})(?:[ ]\d+)?"
    rf" (?:and|&) (?:\d+[ ])?(?:{_WORDS})(?![\w])"
)
"""An intersection: "the corner of Nerudova 1850 and Vleugels Heights"."""
_MILITARY = re.compile(
    r"(?<![\w])(?:(?:PSC|Unit|CMR)\s+\d{3,5},?\s+Box\s+\d{3,5}|US[NS][VS]?\s+[A-Z][\w'-]+|"
    r"USCGC\s+[A-Z][\w'-]+)\s+[ADF]PO\s+A[AEP]\s+\d{5}(?![\w])"
)
_FIRST_WORD = re.compile(r"[^\W\d_]+")
_TYPE_WORDS = frozenset(_TYPES.replace(r"\.", ".").split("|"))
_SUFFIXES = tuple(_SUFFIX.strip("(?:)").replace(r"\.", ".").split("|"))
_LOWERCASE_TYPES = words(
    """
    plac aleja boulevard chemin impasse allée quai place cours route
    rue via viale vicolo piazza strada calle avenida avenue rua ul ulica utca u
    """
)
_TOKEN = re.compile(r"[^\s,]+")
_UNIT_WORDS = words(
    """
    apt apt. apartment suite ste ste. unit flat fl. floor # box p.o. po no. bldg studio
    """
)
_ABBREVIATIONS = words(
    """
    apt. ste. st. rd. ave. av. u. ul. no. p.o. fl. dr. blvd. ln. ct.
    """
)
_LOWER_OK = words(
    """
    de del della delle dei di da do dos das du la le les van von der den y e
    """
)
_CONTEXT = re.compile(
    r"address|\blive[sd]? (?:at|in|on)|located at|deliver|ship(?:ped)? to|send (?:it )?to|mail to",
    re.I,
)


def _capitalised(street: str) -> bool:
    """Every word of a street is capitalised, but for particles ("Rue de la Paix") and the
    street types written in lowercase in their language ("rue", "via", "ul.")."""
    words = _FIRST_WORD.findall(street)
    return bool(words) and all(
        w[0].isupper()
        or w.lower() in _LOWER_OK
        or w.lower() in _LOWERCASE_TYPES
        or (len(w) <= 4 and i + 1 < len(words) and words[i + 1][0].isupper())
        for i, w in enumerate(words)
    )


def _capitalised_next(text: str, position: int) -> bool:
    """Whether the next word is capitalised ("Kamenice nad Lipou", "Dobrovo v Brdih")."""
    following = re.match(r"[ ]([^\W\d_])", text[position : position + 2])
    return following is not None and following.group(1).isupper()


def _extend(text: str, end: int) -> int:
    """The end of the address whose street ends at ``end``: unit, city, region, postcode and
    country (capitalised words, codes and numbers, across commas and single line breaks),
    until a lowercase word, a blank line or a sentence's full stop."""
    best, position = end, end
    for _ in range(12):
        token = _TOKEN.search(text, position)
        if token is None:
            break
        gap = text[position : token.start()]
        if len(gap) > 3 or "  " in gap or gap.count("\n") > 1 or (gap and gap.strip(" ,\n")):
            break
        word = token.group().rstrip("?!;:")
        word = word if word.count("(") == word.count(")") else word.rstrip(")")
        lower = word.lower()
        stops = word.endswith(".") and lower not in _ABBREVIATIONS and len(word) > 2
        word = word.rstrip(".") if stops else word
        ok = (
            word[:1].isupper()
            or word[:1].isdigit()
            or lower in _LOWER_OK
            or (word.isalpha() and len(word) <= 3 and _capitalised_next(text, token.end()))
            or lower in _UNIT_WORDS
            or (word.startswith("(") and word[1:2].isupper())
        )
        if not word or not ok:
            break
        best = position = token.start() + len(word)
        if stops or len(word) < len(token.group().rstrip(".")):
            break
    return best


def _street(match: re.Match[str], number_first: bool, labelled: bool) -> tuple[int, int] | None:
    """The span of the street in a candidate, if it is one: capitalised words with a street
    type ("Street", "rue", "-straße"), or any capitalised words after an address label."""
    words = match.group("w").split(" ")
    has_number = match.group("n") is not None
    starts = [match.start("w")]
    for word in words[:-1]:
        starts.append(starts[-1] + len(word) + 1)
    for k in range(len(words) if not number_first else 1):  # street-first: drop leading words
        kept = words[k:]
        lowered = [w.lower() for w in kept]
        typed = lowered[0].rstrip(".") in _TYPE_WORDS and len(kept) > 1
        suffixed = any(w.rstrip(".").endswith(_SUFFIXES) or w.endswith("str.") for w in lowered)
        end = match.end()
        if number_first and not has_number:
            ends = [i for i, w in enumerate(lowered) if w.rstrip(".") in _TYPE_WORDS]
            if ends:
                kept = kept[: ends[-1] + 1]
                end = starts[k + ends[-1]] + len(kept[-1])
                return (match.start(), end) if _capitalised(" ".join(kept)) else None
        ok = (has_number and (number_first or typed or suffixed)) or labelled
        if ok and _capitalised(" ".join(kept)):
            return (match.start() if number_first else starts[k]), end
    return None


def find_addresses(text: str) -> Iterator[Finding]:
    """STREET_ADDRESS findings in ``text`` (possibly overlapping; the detector resolves)."""
    for pattern in (_MILITARY, _CORNER):
        for m in pattern.finditer(text):
            yield Finding(m.start(), m.end(), "STREET_ADDRESS", 0.8)
    has_label = _CONTEXT.search(text) is not None
    for pattern in (_NUMBER_FIRST, _STREET_FIRST):
        for m in pattern.finditer(text):
            labelled = has_label and bool(_CONTEXT.search(text, max(0, m.start() - 60), m.start()))
            span = _street(m, pattern is _NUMBER_FIRST, labelled)
            if span is None:
                continue
            end = _extend(text, span[1])
            while end > span[1] and not text[end - 1].isalnum():
                end -= 1
            yield Finding(span[0], end, "STREET_ADDRESS", 0.6)
