"""Reports a person reads without the code: `report.md` and a self-contained `report.html`.

    sections = [Section("Attack success", "What the table shows ...", tables=[Table(...)], figures=[Figure(...)])]
    write_report("mosa demo", "Small-model results ...", sections, output_dir)

The Markdown links its figures (copied beside it under figures/); the HTML embeds them, so the one
file can be mailed or attached to an issue.
"""

from __future__ import annotations

import base64
import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mosa.paths import write_atomically


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    path: Path
    caption: str
    name: str | None = None  # its file name under figures/ (default: the source's), to keep two apart

    @property
    def file_name(self) -> str:
        return self.name or self.path.name


@dataclass
class Section:
    title: str
    text: str  # plain paragraphs separated by blank lines
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    details: str | None = None  # preformatted text (a configuration), shown as a code block


def write_report(title: str, intro: str, sections: list[Section], output_dir: str | Path) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    figures_dir = output_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for figure in section.figures:
            if figure.path.resolve() != (figures_dir / figure.file_name).resolve():
                shutil.copyfile(figure.path, figures_dir / figure.file_name)
    markdown, page = output_dir / "report.md", output_dir / "report.html"
    write_atomically(markdown, to_markdown(title, intro, sections))
    write_atomically(page, to_html(title, intro, sections))
    return markdown, page


def to_markdown(title: str, intro: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", intro, ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.text, ""]
        for table in section.tables:
            lines += [f"**{table.caption}**", "", "| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
            lines += ["| " + " | ".join(row) + " |" for row in table.rows]
            lines.append("")
        for figure in section.figures:
            lines += [f"![{figure.caption}](figures/{figure.file_name})", "", f"*{figure.caption}*", ""]
        if section.details:
            lines += ["```", section.details.rstrip(), "```", ""]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; } th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
figure { margin: 1em 0 1.6em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; } pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.intro { background: #fff8e1; border-left: 4px solid #f0b400; padding: .6em 1em; }
"""


def to_html(title: str, intro: str, sections: list[Section]) -> str:
    escape = html.escape
    paragraphs = lambda text: "".join(f"<p>{escape(p.strip())}</p>" for p in text.split("\n\n") if p.strip())  # noqa: E731
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><div class='intro'>{paragraphs(intro)}</div>",
    ]
    for section in sections:
        parts.append(f"<h2>{escape(section.title)}</h2>{paragraphs(section.text)}")
        for table in section.tables:
            head = "".join(f"<th>{escape(cell)}</th>" for cell in table.header)
            body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
            parts.append(
                f"<table><caption>{escape(table.caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            )
        for figure in section.figures:
            data = base64.b64encode(figure.path.read_bytes()).decode()
            parts.append(
                f"<figure><img alt='{escape(figure.caption)}' src='data:image/png;base64,{data}'>"
                f"<figcaption>{escape(figure.caption)}</figcaption></figure>"
            )
        if section.details:
            parts.append(f"<pre>{escape(section.details)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
