#!/usr/bin/env python3
"""Generates runtime/text/unicode_tables.h from the Unicode Character Database.

Run by hand when the reference changes; the output is committed so a build
never needs Python or the UCD:

    python3 tools/gen_unicode.py UCD_DIR --class-age 16.0 --digits-age 17.0 \
        --nfc-age 9.0 > runtime/text/unicode_tables.h

UCD_DIR holds UnicodeData.txt, PropList.txt, DerivedAge.txt and
DerivedNormalizationProps.txt of a Unicode version at least as new as every
age (Debian's package unicode-data installs them in /usr/share/unicode/;
the committed tables come from unicode-data 17.0.0-2).

The ages pin the tables to the Unicode versions of the reference, HF
tokenizers (0.22): its regexes (Oniguruma) class characters by Unicode 16.0,
its Digits pre-tokenizer (Rust's char::is_numeric) by Unicode 17.0, its NFC
(the unicode-normalization-alignments crate) knows Unicode 9.0.
A character newer than the age is treated as unassigned (class "other",
combining class 0, no decomposition), as the reference does.

Tables (all sorted for binary search, see runtime/text/unicode.c):
  class runs      start << 2 | class for every change of class over
                  U+0000..U+10FFFF (0 other, 1 \\p{L}, 2 \\p{N}, 3 White_Space)
  ccc runs        start << 8 | canonical combining class, for every change
  decompositions  canonical mappings (one or two code points, applied
                  recursively), bit 31 of the code point set when the pair
                  is a primary composite (not Full_Composition_Exclusion)
  compositions    indices of the composable decompositions sorted by pair
Hangul syllables are algorithmic and not in the tables.
"""
import argparse
import os
import re
import sys

LETTER = {"Lu", "Ll", "Lt", "Lm", "Lo"}
NUMBER = {"Nd", "Nl", "No"}
MAX_CP = 0x10FFFF


def read_unicode_data(path):
    """Yields (first, last, fields) with <..., First>/<..., Last> ranges joined."""
    first = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(";")
            cp = int(fields[0], 16)
            name = fields[1]
            if name.endswith(", First>"):
                first = cp
                continue
            if name.endswith(", Last>"):
                yield first, cp, fields
                first = None
                continue
            yield cp, cp, fields


def read_prop(path, prop):
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            rng, name = [x.strip() for x in line.split(";")[:2]]
            if name != prop:
                continue
            if ".." in rng:
                a, b = [int(x, 16) for x in rng.split("..")]
            else:
                a = b = int(rng, 16)
            out.update(range(a, b + 1))
    return out


def read_ages(path):
    """cp -> (major, minor) of the version that assigned it."""
    ages = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            rng, ver = [x.strip() for x in line.split(";")[:2]]
            v = tuple(int(x) for x in ver.split("."))
            a, b = (rng.split("..") + [rng])[:2]
            for cp in range(int(a, 16), int(b, 16) + 1):
                ages[cp] = v
    return ages


def version(s):
    return tuple(int(x) for x in s.split("."))


def runs(values, shift):
    """Entries start << shift | value at every change of value (dict cp -> value, default 0)."""
    out = []
    prev = None
    cps = sorted(values)
    # Walk change points only: a value starts at cp and may end at cp + 1.
    points = set([0])
    for cp in cps:
        points.add(cp)
        if cp + 1 <= MAX_CP:
            points.add(cp + 1)
    for cp in sorted(points):
        v = values.get(cp, 0)
        if v != prev:
            out.append(cp << shift | v)
            prev = v
    return out


def emit_array(name, ctype, items, per_line, fmt):
    lines = ["static const %s %s[%d] = {" % (ctype, name, len(items))]
    for i in range(0, len(items), per_line):
        lines.append("\t" + " ".join(fmt % x + "," for x in items[i:i + per_line]))
    lines.append("};")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("ucd", nargs="?", default="/usr/share/unicode")
    ap.add_argument("--class-age", default="16.0", help="Unicode version of \\p{L} \\p{N}")
    ap.add_argument("--nfc-age", default="9.0", help="Unicode version of NFC")
    ap.add_argument("--digits-age", default="17.0", help="Unicode version of Digits' is_numeric")
    args = ap.parse_args()
    digits_age = version(args.digits_age)
    extra = []  # numeric by digits_age, not by class_age
    ucd = args.ucd
    class_age = version(args.class_age)
    nfc_age = version(args.nfc_age)
    ages = read_ages(os.path.join(ucd, "DerivedAge.txt"))
    cls = {}
    ccc = {}
    decomp = {}
    for first, last, f in read_unicode_data(os.path.join(ucd, "UnicodeData.txt")):
        gc = f[2]
        c = 1 if gc in LETTER else 2 if gc in NUMBER else 0
        cc = int(f[3])
        for cp in range(first, last + 1):
            age = ages.get(cp, (99, 0))
            if c and age <= class_age:
                cls[cp] = c
            elif c == 2 and age <= digits_age:
                extra.append(cp)
            if cc and age <= nfc_age:
                ccc[cp] = cc
        d = f[5]
        if d and not d.startswith("<") and ages.get(first, (99, 0)) <= nfc_age:
            assert first == last
            decomp[first] = [int(x, 16) for x in d.split()]
    for cp in read_prop(os.path.join(ucd, "PropList.txt"), "White_Space"):
        assert cp not in cls
        cls[cp] = 3
    excl = read_prop(os.path.join(ucd, "DerivedNormalizationProps.txt"),
                     "Full_Composition_Exclusion")

    ucd_version = "?"
    with open(os.path.join(ucd, "ReadMe.txt"), encoding="utf-8") as f:
        m = re.search(r"Version (\d+\.\d+\.\d+)", f.read())
        if m:
            ucd_version = m.group(1)
    with open(os.path.join(ucd, "DerivedAge.txt"), encoding="utf-8") as f:
        m = re.search(r"DerivedAge-(\d+\.\d+\.\d+)", f.read())
        if m:
            ucd_version = m.group(1)

    class_runs = runs(cls, 2)
    ccc_runs = runs(ccc, 8)
    entries = []
    for cp in sorted(decomp):
        d = decomp[cp]
        assert 1 <= len(d) <= 2
        composable = len(d) == 2 and cp not in excl
        entries.append((cp | (1 << 31 if composable else 0), d[0], d[1] if len(d) == 2 else 0))
    comp = sorted((i for i, e in enumerate(entries) if e[0] >> 31), key=lambda i: (entries[i][1], entries[i][2]))
    assert len(entries) < 65536

    out = []
    out.append("/* Generated by tools/gen_unicode.py from the Unicode Character Database")
    out.append(" * %s: classes as of Unicode %s, Digits %s, NFC %s. Do not edit. */"
               % (ucd_version, args.class_age, args.digits_age, args.nfc_age))
    out.append("#ifndef NB_UNICODE_TABLES_H")
    out.append("#define NB_UNICODE_TABLES_H")
    out.append("")
    out.append("#include <stdint.h>")
    out.append("")
    out.append("/* start << 2 | class (0 other, 1 L, 2 N, 3 White_Space) */")
    out.append(emit_array("uc_class_runs", "uint32_t", class_runs, 8, "0x%08x"))
    out.append("")
    out.append("/* first, last: numeric for the Digits pre-tokenizer (Rust's char::is_numeric,")
    out.append(" * Unicode %s) but not yet \\p{N} for the regexes */" % args.digits_age)
    pairs = []
    for cp in extra:
        if pairs and pairs[-1][1] == cp - 1:
            pairs[-1][1] = cp
        else:
            pairs.append([cp, cp])
    flat_pairs = [x for p in pairs for x in p] or [0xFFFFFFFF, 0]
    out.append(emit_array("uc_numeric_extra", "uint32_t", flat_pairs, 8, "0x%x"))
    out.append("")
    out.append("/* start << 8 | canonical combining class */")
    out.append(emit_array("uc_ccc_runs", "uint32_t", ccc_runs, 8, "0x%08x"))
    out.append("")
    out.append("/* code point (bit 31: primary composite), first, second (0: singleton) */")
    flat = [x for e in entries for x in e]
    out.append(emit_array("uc_decomp", "uint32_t", flat, 9, "0x%x"))
    out.append("")
    out.append("/* indices into uc_decomp of the primary composites, sorted by (first, second) */")
    out.append(emit_array("uc_comp", "uint16_t", comp, 12, "%d"))
    out.append("")
    out.append("#endif")
    print("\n".join(out))


if __name__ == "__main__":
    main()
