#!/usr/bin/env python3
"""Checks compiled wgmma loops for a register clobber ptxas once produced.

Reads `cuobjdump -sass BINARY` on stdin (or from the files named);
--self-test checks the checker on two synthetic functions. For every
function with HGMMA instructions whose A operand comes from registers, and
every loop (a backward branch) around such an HGMMA: when the A registers are
not written in the loop before the HGMMA (their value is carried from the
previous iteration, as q's fragments are in shw_kernel), nothing in the loop
may write them. In 2026-12 ptxas (CUDA 13) let shw_kernel<64, __half, 2>'s
softmax reuse q's registers, so every tile after the first read garbage
(attn_shared_wgmma.cu, shw_keep_q). Prints one line per function and
`sass_check: N passed, M failed` last; exit status 1 on a failure or when no
such function was found.
"""
import re
import sys

INSN = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+([^;]*);", re.M)
WRITES_NONE = ("ST", "RED", "ATOM", "BRA", "BAR", "EXIT", "RET", "CALL", "WARPGROUP",
               "DEPBAR", "LDGSTS", "LDGDEPBAR", "FENCE", "MEMBAR", "NOP", "YIELD",
               "HGMMA", "SYNCS", "BSSY", "BSYNC", "WARPSYNC", "PREEXIT", "ERRBAR", "CCTL")


def written(insn):
    """Registers an instruction writes (its first operand), width from the
    opcode's .64 / .128 / WIDE suffixes; empty for stores and control."""
    body = re.sub(r"^@!?U?P[T0-9]+\s+", "", insn)
    op = body.split(" ", 1)[0]
    if op.startswith(WRITES_NONE) or " " not in body:
        return set()
    m = re.match(r"R(\d+)\b", body.split(" ", 1)[1])
    if not m:
        return set()
    w = 4 if ".128" in op else 2 if (".64" in op or ".WIDE" in op) else 1
    return {int(m.group(1)) + i for i in range(w)}


def check(text):
    """(HGMMAs with a register A operand, the clobbers found) of one function."""
    ins = [(int(a, 16), b.strip()) for a, b in INSN.findall(text)]
    addr = {a: i for i, (a, _) in enumerate(ins)}
    loops = []
    for i, (_, l) in enumerate(ins):
        m = re.search(r"\bBRA (?:`\()?(?:\S+ )?(0x[0-9a-f]+)", l)
        if m and int(m.group(1), 16) in addr and addr[int(m.group(1), 16)] <= i:
            loops.append((addr[int(m.group(1), 16)], i))
    bad, seen = [], 0
    for i, (_, l) in enumerate(ins):
        m = re.match(r"HGMMA\S* R\d+, R(\d+),", l)
        if not m:
            continue
        seen += 1
        a = {int(m.group(1)) + k for k in range(4)}
        for t, e in loops:
            if not t <= i <= e:
                continue
            before = set().union(*(written(x) for _, x in ins[t:i]))
            carried = a - before
            for j in range(i + 1, e + 1):
                hit = written(ins[j][1]) & carried
                if hit:
                    bad.append("A register R%d of the HGMMA at %#x (carried round the loop "
                               "%#x-%#x) written at %#x: %s" % (min(hit), ins[i][0], ins[t][0],
                                                                ins[e][0], ins[j][0], ins[j][1]))
                    break
    return seen, bad


SELF_TEST = """
        Function : good
        /*0000*/                   MOV R88, R1 ;
        /*0010*/                   WARPGROUP.ARRIVE ;
        /*0020*/                   HGMMA.64x64x16.F32 R24, R88, gdesc[UR16], RZ, !UPT ;
        /*0030*/                   LDS.128 R40, [R2] ;
        /*0040*/                   HGMMA.64x64x16.F32 R56, R40, gdesc[UR16].tnspB, R56 ;
        /*0050*/                   FADD R41, R26, R27 ;
        /*0060*/               @!P0 BRA 0x10 ;
        Function : bad
        /*0000*/                   MOV R88, R1 ;
        /*0010*/                   WARPGROUP.ARRIVE ;
        /*0020*/                   HGMMA.64x64x16.F32 R24, R88, gdesc[UR16], RZ, !UPT ;
        /*0030*/                   MOV R90, 0x3bbb989d ;
        /*0040*/               @!P0 BRA 0x10 ;
"""


def self_test():
    """The two synthetic functions above: `good` writes its P registers
    before their HGMMA in the loop (fine), `bad` overwrites q's carried
    registers after theirs."""
    g, gb = check(SELF_TEST.split("Function : bad")[0])
    b, bb = check(SELF_TEST.split("Function : bad")[1])
    ok = g == 2 and not gb and b == 1 and len(bb) == 1 and "R90" in bb[0]
    print("sass_check self-test: %s" % ("ok" if ok else "FAILED %r %r" % (gb, bb)))
    return 0 if ok else 1


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    text = "".join(open(f).read() for f in sys.argv[1:]) if len(sys.argv) > 1 else sys.stdin.read()
    parts = re.split(r"^\s*Function : (\S+)\s*$", text, flags=re.M)
    npass = nfail = 0
    for k in range(1, len(parts), 2):
        seen, bad = check(parts[k + 1])
        if not seen:
            continue
        if bad:
            nfail += 1
            print("FAIL %s: %s" % (parts[k], bad[0]))
        else:
            npass += 1
            print("ok   %s (%d HGMMA)" % (parts[k], seen))
    if npass + nfail == 0:
        print("no function with register-A HGMMA found")
        nfail = 1
    print("sass_check: %d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
