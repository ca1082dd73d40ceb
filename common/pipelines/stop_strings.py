"""Stop strings, decided as transformers' StopStringCriteria decides them (text-generation's ``stop_sequence``).

After each new token, generation stops when a stop string ends inside that token's text (anywhere in it, the
stop string lying in that token alone or running back over the tokens before it). A stop string that ends
earlier (the prompt's) never stops anything; one that a token both completes and runs past does. The stop string
stays in the output, as EOS does.

Each token's text is the one transformers matches on: for byte-level BPEs (RoBERTa's, Llama 3's), the token's
bytes (stop strings are matched as UTF-8), special tokens as their decoder writes them; for XLM's tokenizer, the
piece as ``convert_tokens_to_string`` writes it after the prefix "abcdef" (so every piece starts with a space and
loses its end-of-word mark: XLM stop strings match far less than the text suggests, exactly as in transformers).
transformers looks back only as many tokens as the longest stop string has characters; so does this.

Greedy and sampled rows are cut after generation (a row's tokens up to its stop do not depend on whether it
stopped); beam search would keep other hypotheses and is refused with stop strings.
"""

from __future__ import annotations

import functools
from typing import Sequence

PREFIX = "abcdef"  # transformers' static prefix, which decoders may treat as a word start


@functools.lru_cache(maxsize=None)
def byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet back to bytes (GPT-2's printable stand-ins for all 256 bytes)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def matching_mode(tokenizer) -> str | None:
    """transformers' choice: "byte_level" for a ByteLevel decoder, "byte_fallback" for one with ByteFallback
    ("<0xNN>" pieces), else None (text)."""
    decoder = getattr(getattr(tokenizer, "_tokenizer", None), "decoder", None)
    if decoder is None:
        return None
    if type(decoder).__name__ == "ByteLevel":
        return "byte_level"
    state = decoder.__getstate__()
    text = state.decode() if isinstance(state, bytes) else str(state)
    if '"ByteFallback"' in text:
        return "byte_fallback"
    return "byte_level" if '"ByteLevel"' in text else None


def token_texts(tokenizer) -> dict[int, str | bytes]:
    """Each id's text as transformers' StopStringCriteria sees it (bytes in the byte modes, else str)."""
    vocab = tokenizer.get_vocab()
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None:  # XLM's own tokenizer: its convert_tokens_to_string, "</w>" -> " " then strip
        base = tokenizer.tokenize(PREFIX)
        table = {}
        for token, index in vocab.items():
            text = "".join(base + [token]).replace("</w>", " ").strip()
            table[index] = text[text.index(PREFIX) + len(PREFIX):]
        return table
    mode, to_bytes = matching_mode(tokenizer), byte_decoder()
    base = backend.encode(PREFIX, add_special_tokens=False).tokens
    table = {}
    for token, index in vocab.items():
        if mode == "byte_level" and all(c in to_bytes for c in token):
            table[index] = bytes(to_bytes[c] for c in token)
        elif mode == "byte_fallback" and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            table[index] = bytes([int(token[3:5], 16)])
        else:  # the token's text as the decoder writes it after the prefix
            text = backend.decoder.decode(base + [token]) if backend.decoder is not None else " ".join(base + [token])
            text = text[text.index(PREFIX) + len(PREFIX):]
            table[index] = text.encode("utf-8") if mode else text
    return table


def stops_as_matched(stops: Sequence[str], table: dict) -> list:
    """The stop strings in the unit the table holds (UTF-8 bytes for byte-level tables)."""
    as_bytes = any(isinstance(v, bytes) for v in table.values())
    return [s.encode("utf-8") if as_bytes else s for s in stops]


def first_stop(ids: Sequence[int], start: int, stops: list, table: dict) -> int | None:
    """The position (index into ``ids``, >= start) of the first token inside whose text a stop string ends, or
    None. ids: the prompt then the new tokens; start: where the new tokens begin. An id the table lacks (past
    the tokenizer's vocabulary) matches nothing, so no stop string runs over it (as transformers' -1 rows)."""
    window = max(len(s) for s in stops)
    empty = stops[0][:0]
    for k in range(start, len(ids)):
        pieces = []  # the texts of the tokens that end at k, back to the window's start or an unknown id
        for t in reversed(ids[max(0, k + 1 - window):k + 1]):
            if int(t) not in table:
                break
            pieces.append(table[int(t)])
        if not pieces:
            continue
        last, text = pieces[0], empty.join(reversed(pieces))
        for end in range(len(text) - len(last) + 1, len(text) + 1):  # the stop string's end inside the token
            if any(end >= len(stop) and text[end - len(stop):end] == stop for stop in stops):
                return k
    return None
