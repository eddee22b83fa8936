"""The report: Markdown linking its figures, and one self-contained HTML file."""

import base64

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mosa.report import Figure, Section, Table, write_report  # noqa: E402


def test_the_report_holds_tables_figures_and_configuration(tmp_path):
    plot = tmp_path / "curve.png"
    plt.figure(figsize=(2, 2))
    plt.plot([0, 1], [1, 0])
    plt.savefig(plot)
    plt.close()
    section = Section(
        "Attack success",
        "First paragraph.\n\nSecond <paragraph>.",
        tables=[Table("ASR by attack", ["attack", "ASR"], [["prefill", "12.5% [5.1, 27.0]"], ["<none>", "0.0%"]])],
        figures=[Figure(plot, "ASR against the prefill position")],
        details="sampler:\n  steps: 32",
    )
    markdown, page = write_report("demo", "Small-model results.", [section], tmp_path / "report")
    text = markdown.read_text()
    assert "| prefill | 12.5% [5.1, 27.0] |" in text and "![ASR against the prefill position](figures/curve.png)" in text
    assert (tmp_path / "report" / "figures" / "curve.png").read_bytes() == plot.read_bytes()
    document = page.read_text()
    assert base64.b64encode(plot.read_bytes()).decode() in document  # embedded: the file stands alone
    assert "&lt;none&gt;" in document and "Second &lt;paragraph&gt;." in document  # escaped, never raw HTML
    assert "steps: 32" in document and document.count("<table>") == 1
