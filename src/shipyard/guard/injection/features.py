"""The features the classifier sees, shared by training and scoring so both see the same.

Three kinds, each named by a prefix: ``w:`` words and ``b:`` word pairs (what is said),
``c:`` character 3- and 4-grams (spelling variants, other languages, scripts without spaces),
and ``r:`` hand-written rules (the shapes injections take in many languages: "ignore the
previous instructions", "reveal your system prompt", "you are now DAN", fake chat-role
markers). N-gram features are weighted 1/sqrt(n) so a long text is not judged by its length;
rule features count fully, so one override sentence inside a long document still weighs.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise

_TOKEN = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")

_IGNORE = (
    r"ignore|disregard|forget|skip|override|bypass|drop|abandon|neglect|overlook|discard|"
    r"ignoriere|ignorieren|vergiss|vergessen|ignora|ignorez|ignorer|oubliez|oublie|olvida|"
    r"olvide|ignorar|esqueça|esqueca|negeer|vergeet|игнорируй|игнорировать|забудь|забудьте|"
    r"zignoruj|zapomnij"
)
_PRIOR = (
    r"previous|prior|above|earlier|preceding|former|original|initial|old|all|any|your|the|"
    r"these|those|every|each|system|developer|operator|vorherigen|bisherigen|obigen|alle|deine|anteriores|previas|"
    r"todas|précédentes|precedentes|toutes|tes|vos|precedenti|tutte|le|vorige|alle|"
    r"предыдущие|все|прежние|poprzednie|wszystkie"
)
_ORDERS = (
    r"instructions?|directions?|directives?|prompts?|rules?|guidelines|guidance|commands?|orders|"
    r"constraints|restrictions|guardrails|programming|context|messages?|text|anweisungen|"
    r"befehle|regeln|instrucciones|reglas|instructions|consignes|règles|istruzioni|regole|"
    r"instruções|instrucoes|regras|instructies|инструкции|указания|правила|instrukcje|polecenia"
)
_RULES: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        rf"\b(?:{_IGNORE})\b(?:\W+\w+){{0,4}}?\W+(?:{_PRIOR})\b(?:\W+\w+){{0,3}}?\W+(?:{_ORDERS})\b"
    ),
    "override_zh_ja": re.compile(
        r"(?:忽略|无视|忘记|忽视|無視|忘れ)[^。\n]{0,12}(?:指令|指示|说明|规则|提示|命令|ルール)|"
        r"(?:指示|ルール|命令|指令|规则)[^。\n]{0,12}(?:無視|忘れ|忽略|无视)"
    ),
    "void": re.compile(
        r"\b(?:previous|prior|earlier|above|old|original|existing)\s+(?:guidance|instructions|"
        r"rules|directives|guidelines|prompt)\b[^.\n]{0,20}\b(?:is|are)\s+(?:now\s+)?(?:void|"
        r"cancell?ed|obsolete|revoked|invalid|no longer valid|lifted|suspended)"
    ),
    "new_instructions": re.compile(
        r"\b(?:new|updated|real|actual|true|following|neue|nuevas|nouvelles|nuove)\s+"
        r"(?:instructions?|task|directive|anweisungen|instrucciones|consignes|istruzioni)\s*[:\uff1a]"
    ),
    "instead": re.compile(
        r"\binstead\b[^.\n]{0,60}\b(?:say|print|output|write|respond|reply|tell|send|do|forward|"
        r"email|delete|transfer)\b"
    ),
    "reveal_prompt": re.compile(
        r"\b(?:reveal|print|repeat|show|output|display|leak|tell|give|share|recite|spell|"
        r"dump|list|what(?:'s| is| are| were)?)\b[^.\n]{0,40}\b(?:(?:your|system|initial|"
        r"starting|hidden|secret|original|developer|pre-?)\s*(?:prompt|instructions?|"
        r"initiali[sz]ation|configuration|rules|guidelines|message|password)|"
        r"initiali[sz]ation string|(?:this|the) (?:entire|whole) conversation)"
    ),
    "repeat_verbatim": re.compile(
        r"\b(?:repeat|print|output|copy|recite)\b[^.\n]{0,60}\b(?:word for word|verbatim|"
        r"everything|in full|starting with|begin(?:ning)? with)\b|\bmy instructions are\b"
    ),
    "agent_command": re.compile(
        r"(?:\.env\b|os\.environ|\bprintenv\b|id_rsa|/etc/(?:passwd|shadow)|\bos\.system\(|"
        r"\bcurl\b[^\n]{0,80}\|\s*(?:ba)?sh|\brm -rf\b|subprocess\.)"
    ),
    "prompt_above": re.compile(
        r"\b(?:everything|all|text|words)\b[^.\n]{0,20}\b(?:above|before this|so far)\b"
    ),
    "persona": re.compile(
        r"\b(?:you are now|from now on,? you|act as an? (?:unrestricted|unfiltered|uncensored|"
        r"evil|jailbroken)|pretend (?:to be|you are)|you will (?:now )?act as|stay in character|"
        r"roleplay as|simulate an? )"
    ),
    "no_limits": re.compile(
        r"\b(?:no|without|free (?:of|from)|not bound by|ignore all|break(?:ing)? (?:free|out))\b"
        r"[^.\n]{0,30}\b(?:restrictions|filters?|limits|limitations|censorship|ethics|ethical|"
        r"morals?|guidelines|rules|policies|boundaries)\b"
    ),
    "jailbreak_names": re.compile(
        r"\b(?:dan|do anything now|developer mode|jailbreak|jailbroken|god mode|dude|aim|"
        r"stan|anti-?dan|evil ?bot|unfiltered|uncensored|opposite mode|dev mode)\b"
    ),
    "role_marker": re.compile(
        r"(?:<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?inst\]|<</?sys>>|^\s*#{2,}\s*"
        r"(?:system\b|new instructions?\b)|\b(?:system|assistant)\s*:\s*(?:\n|$)|"
        r"</?(?:system|instructions?|admin)>)",
        re.MULTILINE,
    ),
    "to_the_ai": re.compile(
        r"\b(?:ai|assistant|llm|language model|chatbot|gpt|claude|agent|bot)\b[^.\n]{0,30}"
        r"\b(?:must|should|shall|needs? to|has to|is instructed|reading this)\b"
    ),
    "important_message": re.compile(
        r"\b(?:important|attention|urgent|(?:note|message|notice) (?:to|for))\b[^.\n]{0,30}"
        r"\b(?:ai|assistant|llm|model|agent|gpt|claude|chatbot)\b"
    ),
    "exfil": re.compile(
        r"(?:!\[[^\]]*\]\(https?://[^)\s]*(?:[{$<\[]|[?&](?:data|secret|payload|info|"
        r"history|conversation|password|prompt|chat|q)=)|\b(?:send|forward|email|post|upload|"
        r"exfiltrate|transfer)\b[^.\n]{0,40}\b(?:password|credentials?|api keys?|tokens?|"
        r"secrets?|conversation|chat history|data)\b[^.\n]{0,40}\b(?:to|at)\b)"
    ),
    "decode_follow": re.compile(
        r"\b(?:decode|decrypt|translate|reverse|rot13|base64)\b[^.\n]{0,60}\b(?:follow|execute|"
        r"obey|do what|carry out|perform)\b"
    ),
    "refusal_suppression": re.compile(
        r"\b(?:never|do not|don't|must not|cannot|won't)\s+(?:refuse|decline|apologi[sz]e|"
        r"say (?:that )?you can(?:no|')t|mention (?:that )?you|warn|add (?:any )?(?:warnings|"
        r"disclaimers))"
    ),
    "harm_request": re.compile(
        r"\b(?:how to|steps to|instructions for|guide to|recipe for)\b[^.\n]{0,30}\b(?:make|"
        r"build|synthesi[sz]e|cook|create)\b[^.\n]{0,30}\b(?:bomb|explosive|meth|napalm|weapon|"
        r"malware|ransomware|virus|poison)\b"
    ),
}


RULE_WEIGHTS: dict[str, float] = {
    "override": 0.99,
    "override_zh_ja": 0.99,
    "decode_follow": 0.99,
    "void": 0.98,
    "new_instructions": 0.98,
    "exfil": 0.98,
    "reveal_prompt": 0.98,
    "repeat_verbatim": 0.85,
    "role_marker": 0.85,
    "refusal_suppression": 0.8,
    "harm_request": 0.8,
    "important_message": 0.8,
    "persona": 0.7,
    "no_limits": 0.7,
    "prompt_above": 0.7,
    "agent_command": 0.7,
    "instead": 0.7,
    "to_the_ai": 0.7,
    "jailbreak_names": 0.4,
}
"""How much each rule alone says "injection" (hand-set: a rule firing is evidence in any
language or template, which the n-grams may not have seen). Hits combine as a noisy-or: one
strong rule (~0.98) or two medium ones (~0.8) reach the usual threshold."""


def rule_score(hits: list[str]) -> float:
    """The noisy-or of the hit rules' weights: 1 - prod(1 - w)."""
    miss = 1.0
    for name in hits:
        miss *= 1.0 - RULE_WEIGHTS.get(name.removeprefix("r:"), 0.0)
    return 1.0 - miss


def rule_hits(text: str) -> list[str]:
    """The names of the rules ``text`` (normalised, lower case) matches."""
    return [name for name, pattern in _RULES.items() if pattern.search(text)]


def parts(text: str) -> tuple[set[str], list[str]]:
    """The n-gram features of ``text`` (already normalised) and the rule features it hits."""
    lowered = _SPACE.sub(" ", text.lower()).strip()
    tokens = _TOKEN.findall(lowered)
    grams = {"w:" + t for t in tokens}
    grams.update(f"b:{a} {b}" for a, b in pairwise(tokens))
    padded = f" {lowered} "
    for n in (3, 4):
        grams.update("c:" + padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams, ["r:" + name for name in rule_hits(lowered)]


def ngram_weight(grams: set[str]) -> float:
    """The value of each n-gram feature: 1/sqrt(n), so the n-gram part has unit length."""
    return 1.0 / math.sqrt(len(grams)) if grams else 0.0


def features(text: str) -> dict[str, float]:
    """The weighted features of ``text`` (already normalised), as training sees them."""
    grams, rules = parts(text)
    out = dict.fromkeys(grams, ngram_weight(grams))
    out.update(dict.fromkeys(rules, 1.0))
    return out
