#!/usr/bin/env python3
"""Renders a terminal capture (`tmux capture-pane -e -p`, ANSI colours) to a PNG.

Usage: ansi_to_png.py CAPTURE.txt WIDTH HEIGHT OUT.png
Needs Pillow and pyte (pip install pillow pyte) and the DejaVu Sans Mono font.
"""
import sys

import pyte
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE = 16
BACKGROUND = (24, 24, 32)
FOREGROUND = (220, 220, 220)
PALETTE = {
    "black": (40, 40, 40), "red": (230, 80, 80), "green": (110, 200, 110),
    "brown": (220, 190, 90), "yellow": (220, 190, 90), "blue": (100, 150, 240),
    "magenta": (200, 120, 220), "cyan": (90, 200, 210), "white": (230, 230, 230),
    "brightblack": (110, 110, 120), "brightred": (255, 110, 110),
    "brightgreen": (140, 230, 140), "brightyellow": (250, 220, 120),
    "brightblue": (130, 170, 255), "brightmagenta": (220, 150, 240),
    "brightcyan": (120, 220, 230), "brightwhite": (255, 255, 255),
}


def colour(name, default):
    if name == "default":
        return default
    if name in PALETTE:
        return PALETTE[name]
    if len(name) == 6:
        try:
            return tuple(int(name[i:i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            return default
    return default


def main():
    capture, width, height, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    screen = pyte.Screen(width, height)
    stream = pyte.Stream(screen)
    with open(capture, encoding="utf-8") as f:
        # tmux separates lines with \n; the emulator wants \r\n.
        # The last line's newline would scroll the screen by one.
        stream.feed(f.read().rstrip("\n").replace("\n", "\r\n"))
    font = ImageFont.truetype(FONT, SIZE)
    bold = ImageFont.truetype(BOLD, SIZE)
    cell_w = int(font.getlength("M"))
    cell_h = SIZE + 4
    image = Image.new("RGB", (cell_w * width + 16, cell_h * height + 16), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        row = screen.buffer[y]
        for x in range(width):
            char = row[x]
            fg = colour(char.fg, FOREGROUND)
            bg = colour(char.bg, BACKGROUND)
            if char.reverse:
                fg, bg = bg, fg
            left, top = 8 + x * cell_w, 8 + y * cell_h
            if bg != BACKGROUND:
                draw.rectangle([left, top, left + cell_w, top + cell_h], fill=bg)
            if char.data.strip():
                draw.text((left, top + 1), char.data, font=bold if char.bold else font, fill=fg)
    image.save(out)


if __name__ == "__main__":
    main()
