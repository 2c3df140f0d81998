#!/usr/bin/env python3
"""Writes the sample PDF byte-for-byte reproducibly, with the standard library only.

A title page with a drawn image, then Shakespeare's sonnets (public domain, 1609), one
per page, each with an outline (bookmark) entry. `--pages N` pads the book to N pages
with numbered pages (the benchmark uses 300).

    python3 samples/make_pdf.py samples/sample.pdf
    python3 samples/make_pdf.py --pages 300 /tmp/big.pdf
"""

import sys
import zlib

SONNETS = [
    ("Sonnet 18", [
        "Shall I compare thee to a summer's day?",
        "Thou art more lovely and more temperate:",
        "Rough winds do shake the darling buds of May,",
        "And summer's lease hath all too short a date;",
        "Sometime too hot the eye of heaven shines,",
        "And often is his gold complexion dimm'd;",
        "And every fair from fair sometime declines,",
        "By chance or nature's changing course untrimm'd;",
        "But thy eternal summer shall not fade,",
        "Nor lose possession of that fair thou ow'st;",
        "Nor shall Death brag thou wander'st in his shade,",
        "When in eternal lines to time thou grow'st:",
        "So long as men can breathe or eyes can see,",
        "So long lives this, and this gives life to thee.",
    ]),
    ("Sonnet 29", [
        "When, in disgrace with fortune and men's eyes,",
        "I all alone beweep my outcast state,",
        "And trouble deaf heaven with my bootless cries,",
        "And look upon myself and curse my fate,",
        "Wishing me like to one more rich in hope,",
        "Featured like him, like him with friends possess'd,",
        "Desiring this man's art and that man's scope,",
        "With what I most enjoy contented least;",
        "Yet in these thoughts myself almost despising,",
        "Haply I think on thee, and then my state,",
        "Like to the lark at break of day arising",
        "From sullen earth, sings hymns at heaven's gate;",
        "For thy sweet love remember'd such wealth brings",
        "That then I scorn to change my state with kings.",
    ]),
    ("Sonnet 30", [
        "When to the sessions of sweet silent thought",
        "I summon up remembrance of things past,",
        "I sigh the lack of many a thing I sought,",
        "And with old woes new wail my dear time's waste:",
        "Then can I drown an eye, unused to flow,",
        "For precious friends hid in death's dateless night,",
        "And weep afresh love's long since cancell'd woe,",
        "And moan the expense of many a vanish'd sight:",
        "Then can I grieve at grievances foregone,",
        "And heavily from woe to woe tell o'er",
        "The sad account of fore-bemoaned moan,",
        "Which I new pay as if not paid before.",
        "But if the while I think on thee, dear friend,",
        "All losses are restored and sorrows end.",
    ]),
    ("Sonnet 73", [
        "That time of year thou mayst in me behold",
        "When yellow leaves, or none, or few, do hang",
        "Upon those boughs which shake against the cold,",
        "Bare ruin'd choirs, where late the sweet birds sang.",
        "In me thou see'st the twilight of such day",
        "As after sunset fadeth in the west,",
        "Which by and by black night doth take away,",
        "Death's second self, that seals up all in rest.",
        "In me thou see'st the glowing of such fire",
        "That on the ashes of his youth doth lie,",
        "As the death-bed whereon it must expire,",
        "Consumed with that which it was nourish'd by.",
        "This thou perceivest, which makes thy love more strong,",
        "To love that well which thou must leave ere long.",
    ]),
    ("Sonnet 116", [
        "Let me not to the marriage of true minds",
        "Admit impediments. Love is not love",
        "Which alters when it alteration finds,",
        "Or bends with the remover to remove:",
        "O no! it is an ever-fixed mark",
        "That looks on tempests and is never shaken;",
        "It is the star to every wandering bark,",
        "Whose worth's unknown, although his height be taken.",
        "Love's not Time's fool, though rosy lips and cheeks",
        "Within his bending sickle's compass come:",
        "Love alters not with his brief hours and weeks,",
        "But bears it out even to the edge of doom.",
        "If this be error and upon me proved,",
        "I never writ, nor no man ever loved.",
    ]),
    ("Sonnet 130", [
        "My mistress' eyes are nothing like the sun;",
        "Coral is far more red than her lips' red;",
        "If snow be white, why then her breasts are dun;",
        "If hairs be wires, black wires grow on her head.",
        "I have seen roses damask'd, red and white,",
        "But no such roses see I in her cheeks;",
        "And in some perfumes is there more delight",
        "Than in the breath that from my mistress reeks.",
        "I love to hear her speak, yet well I know",
        "That music hath a far more pleasing sound;",
        "I grant I never saw a goddess go;",
        "My mistress, when she walks, treads on the ground:",
        "And yet, by heaven, I think my love as rare",
        "As any she belied with false compare.",
    ]),
]

W, H = 612, 792  # US Letter in points


def esc(s):
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def image_rgb(w, h):
    """A deterministic picture: a sunset sky, a sun and a hill."""
    px = bytearray()
    for y in range(h):
        for x in range(w):
            t = y / (h - 1)
            r, g, b = int(250 - 90 * t), int(180 - 120 * t), int(90 + 110 * t)
            dx, dy = x - w * 0.65, y - h * 0.55
            if dx * dx + dy * dy < (h * 0.18) ** 2:
                r, g, b = 255, 220, 80
            hill = h * 0.72 + 18 * ((x / w - 0.4) ** 2) * 10
            if y > hill:
                r, g, b = 40 + (x * 7) % 20, 110 + (y * 3) % 30, 60
            px += bytes((r, g, b))
    return bytes(px)


def build(pages_wanted):
    objs = {}  # number -> bytes

    def put(n, body):
        objs[n] = body if isinstance(body, bytes) else body.encode("latin-1")

    # 1 catalog, 2 pages, 3 font regular, 4 font italic, 5 image, 6 outlines root
    put(3, "<< /Type /Font /Subtype /Type1 /BaseFont /Times-Roman /Encoding /WinAnsiEncoding >>")
    put(4, "<< /Type /Font /Subtype /Type1 /BaseFont /Times-Italic /Encoding /WinAnsiEncoding >>")
    iw, ih = 240, 150
    data = zlib.compress(image_rgb(iw, ih), 9)
    put(5, b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
           b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % (iw, ih, len(data))
        + data + b"\nendstream")

    contents = []
    # Title page
    c = ["BT /F1 34 Tf 1 0 0 1 72 660 Tm (Shakespeare's Sonnets) Tj ET",
         "BT /F2 16 Tf 1 0 0 1 72 628 Tm (A selection, 1609 - a Tally sample document) Tj ET",
         "q 360 0 0 225 126 330 cm /Im0 Do Q",
         "BT /F2 12 Tf 1 0 0 1 72 280 Tm (Public-domain text. This file is regenerated by samples/make_pdf.py.) Tj ET"]
    contents.append(("Title page", "\n".join(c)))
    for title, lines in SONNETS:
        c = ["BT /F1 24 Tf 1 0 0 1 72 700 Tm (%s) Tj ET" % esc(title)]
        y = 650
        for i, line in enumerate(lines):
            indent = 96 if i >= 12 else 72
            c.append("BT /F1 14 Tf 1 0 0 1 %d %d Tm (%s) Tj ET" % (indent, y, esc(line)))
            y -= 24
        c.append("BT /F2 10 Tf 1 0 0 1 72 60 Tm (William Shakespeare) Tj ET")
        contents.append((title, "\n".join(c)))
    while len(contents) < pages_wanted:
        n = len(contents) + 1
        c = ["BT /F1 20 Tf 1 0 0 1 72 700 Tm (Page %d) Tj ET" % n]
        y = 650
        for j in range(20):
            title, lines = SONNETS[(n + j) % len(SONNETS)]
            c.append("BT /F1 12 Tf 1 0 0 1 72 %d Tm (%s) Tj ET" % (y, esc(lines[j % 14])))
            y -= 26
        contents.append((None, "\n".join(c)))

    n_pages = len(contents)
    first = 7
    kids = []
    for i, (_, text) in enumerate(contents):
        pn, cn = first + 2 * i, first + 2 * i + 1
        kids.append(pn)
        footer = "\nBT /F2 9 Tf 1 0 0 1 540 40 Tm (%d) Tj ET" % (i + 1)
        stream = (text + footer).encode("latin-1")
        put(pn, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R "
                "/F2 4 0 R >> /XObject << /Im0 5 0 R >> >> /Contents %d 0 R >>" % (W, H, cn))
        put(cn, b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    put(2, "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join("%d 0 R" % p for p in kids), n_pages))

    # Outline: one entry per titled page.
    titled = [(i, t) for i, (t, _) in enumerate(contents) if t]
    ob = first + 2 * n_pages
    nums = [ob + j for j in range(len(titled))]
    for j, (i, t) in enumerate(titled):
        d = ["/Title (%s)" % esc(t), "/Parent 6 0 R", "/Dest [%d 0 R /XYZ 0 %d 0]" % (kids[i], H)]
        if j > 0:
            d.append("/Prev %d 0 R" % nums[j - 1])
        if j + 1 < len(nums):
            d.append("/Next %d 0 R" % nums[j + 1])
        put(nums[j], "<< %s >>" % " ".join(d))
    put(6, "<< /Type /Outlines /First %d 0 R /Last %d 0 R /Count %d >>" % (nums[0], nums[-1], len(nums)))
    put(1, "<< /Type /Catalog /Pages 2 0 R /Outlines 6 0 R /PageMode /UseOutlines >>")

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    top = max(objs)
    offsets = [0] * (top + 1)
    for n in range(1, top + 1):
        offsets[n] = len(out)
        out += b"%d 0 obj\n" % n + objs[n] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (top + 1)
    for n in range(1, top + 1):
        out += b"%010d 00000 n \n" % offsets[n]
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info << /Title (Shakespeare's Sonnets - Tally sample) >> >>\nstartxref\n%d\n%%%%EOF\n" % (top + 1, xref)
    return bytes(out)


def main(argv):
    pages = 0
    args = list(argv)
    if args and args[0] == "--pages":
        pages = int(args[1])
        args = args[2:]
    if len(args) != 1:
        sys.stderr.write("usage: make_pdf.py [--pages N] OUT.pdf\n")
        return 2
    with open(args[0], "wb") as f:
        f.write(build(pages))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
