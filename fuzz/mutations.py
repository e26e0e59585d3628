"""Ways to damage a licence file, driven by any source of choices.

Each mutation takes the file (or body) bytes and a ``Pick``: a function that, given
``n``, returns a choice in ``range(n)``. Hypothesis (``st.integers``), atheris
(``ConsumeIntInRange``) and a seeded ``random.Random`` (``randrange``) all fit, so
one set of mutations serves the suite's properties, the long campaign and the
corpus. A mutation may return its input unchanged (a flip of an empty file, a swap
of a section with itself); callers that need a change check for it.

The mutations mirror what happens to real files: bit rot and transfer damage
(flips, insertions, deletions, truncation), editing by hand (duplicated or swapped
lines and sections, a changed number), editors and mail clients (CRLF, a byte order
mark) and lookalike text (confusable spellings of the product name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Pick = Callable[[int], int]
Mutation = Callable[[bytes, Pick], bytes]

PRODUCT = b"Assistant"

CONFUSABLE_PRODUCTS: tuple[str, ...] = (
    "\u0410ssistant",  # Cyrillic capital A
    "Ass\u0456stant",  # Cyrillic small i
    "Assist\u0430nt",  # Cyrillic small a
    "\uff21ssistant",  # fullwidth A
    "Assis\u200btant",  # zero-width space
    "Assistant\u200d",  # zero-width joiner at the end
    "\ufeffAssistant",  # byte order mark inside the value
    "Assistant ",
    " Assistant",
    "assistant",
    "ASSISTANT",
    "Assistan\u0074\u0301",  # combining accent
    "\u212bssistant",  # Angstrom sign, NFKC-folds to a different letter
    "A\u0455\u0455istant",  # Cyrillic dze for s
    "Assistant\t",
    "Assistant\\u0000",
)
"""Spellings that look like the product name, or that careless comparison (case
folding, stripping, normalisation) would accept as it."""

INTERESTING_BYTES = b'\x00\n\r\t "\\=[]#.-+:0Z\x7f\xc3\xef\xbb\xbf\xff'


def flip_bit(data: bytes, pick: Pick) -> bytes:
    """One bit of one byte inverted."""
    if not data:
        return data
    at = pick(len(data))
    return data[:at] + bytes([data[at] ^ (1 << pick(8))]) + data[at + 1 :]


def set_byte(data: bytes, pick: Pick) -> bytes:
    """One byte replaced by an interesting byte or any byte."""
    if not data:
        return data
    at = pick(len(data))
    return data[:at] + bytes([_some_byte(pick)]) + data[at + 1 :]


def insert_bytes(data: bytes, pick: Pick) -> bytes:
    """One to eight bytes inserted anywhere, the end included."""
    at = pick(len(data) + 1)
    extra = bytes(_some_byte(pick) for _ in range(1 + pick(8)))
    return data[:at] + extra + data[at:]


def delete_bytes(data: bytes, pick: Pick) -> bytes:
    """A run of one to sixteen bytes deleted."""
    if not data:
        return data
    at = pick(len(data))
    return data[:at] + data[at + 1 + pick(16) :]


def truncate(data: bytes, pick: Pick) -> bytes:
    """The file cut short at any offset before its end."""
    if not data:
        return data
    return data[: pick(len(data))]


def duplicate_line(data: bytes, pick: Pick) -> bytes:
    """One line copied to another place: a second ``licensed = ...`` and so on."""
    lines = data.splitlines(keepends=True)
    if not lines:
        return data
    line = lines[pick(len(lines))]
    lines.insert(pick(len(lines) + 1), line if line.endswith(b"\n") else line + b"\n")
    return b"".join(lines)


def swap_lines(data: bytes, pick: Pick) -> bytes:
    """Two lines exchanged."""
    lines = data.splitlines(keepends=True)
    if len(lines) < 2:
        return data
    first, second = pick(len(lines)), pick(len(lines))
    lines[first], lines[second] = lines[second], lines[first]
    return b"".join(lines)


def swap_sections(data: bytes, pick: Pick) -> bytes:
    """Two ``[section]`` blocks (or the top block and a section) exchanged."""
    sections = _sections(data)
    if len(sections) < 2:
        return data
    first, second = pick(len(sections)), pick(len(sections))
    sections[first], sections[second] = sections[second], sections[first]
    return b"".join(sections)


def to_crlf(data: bytes, pick: Pick) -> bytes:
    """Every line ending made CRLF, as a Windows editor or mail client would."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def add_bom(data: bytes, pick: Pick) -> bytes:
    """A UTF-8 byte order mark put in front, as some editors do."""
    return b"\xef\xbb\xbf" + data


def confuse_product(data: bytes, pick: Pick) -> bytes:
    """The product name replaced by a lookalike spelling."""
    if PRODUCT not in data:
        return data
    lookalike = CONFUSABLE_PRODUCTS[pick(len(CONFUSABLE_PRODUCTS))].encode("utf-8")
    return data.replace(b'"' + PRODUCT + b'"', b'"' + lookalike + b'"', 1)


def raise_a_number(data: bytes, pick: Pick) -> bytes:
    """A number after ``= `` made larger: more users, more components."""
    spots = [at for at in range(len(data) - 2) if data[at : at + 2] == b"= "]
    numeric = [at + 2 for at in spots if data[at + 2 : at + 3].isdigit()]
    if not numeric:
        return data
    at = numeric[pick(len(numeric))]
    end = at
    while end < len(data) and data[end : end + 1].isdigit():
        end += 1
    bigger = str(int(data[at:end]) * 10 + 1 + pick(1000)).encode("ascii")
    return data[:at] + bigger + data[end:]


MUTATIONS: tuple[Mutation, ...] = (
    flip_bit,
    set_byte,
    insert_bytes,
    delete_bytes,
    truncate,
    duplicate_line,
    swap_lines,
    swap_sections,
    to_crlf,
    add_bom,
    confuse_product,
    raise_a_number,
)
"""Every mutation, in a fixed order so that a seeded run is reproducible."""


def mutate(data: bytes, pick: Pick, rounds: int = 1) -> bytes:
    """``rounds`` mutations chosen by ``pick``, applied one after the other."""
    for _ in range(rounds):
        data = MUTATIONS[pick(len(MUTATIONS))](data, pick)
    return data


def names(mutations: Sequence[Mutation] = MUTATIONS) -> list[str]:
    """The mutations' names, for reports."""
    return [mutation.__name__ for mutation in mutations]


def _some_byte(pick: Pick) -> int:
    if pick(2):
        return INTERESTING_BYTES[pick(len(INTERESTING_BYTES))]
    return pick(256)


def _sections(data: bytes) -> list[bytes]:
    sections: list[bytes] = []
    current = b""
    for line in data.splitlines(keepends=True):
        if line.startswith(b"[") and current:
            sections.append(current)
            current = b""
        current += line
    if current:
        sections.append(current)
    return sections
