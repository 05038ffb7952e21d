// streamllm trainer: a small, dependency-free SVG line-chart writer for the ablation reports (training-loss curves
// of model variants; log-perplexity versus tokens streamed for cache policies), in the style of the StreamingLLM
// paper's figures. The output is a standalone SVG 1.1 document that any browser or `rsvg-convert` renders.
//
// Deterministic: the same Chart gives the same bytes (coordinates are printed with 2 decimals, no clock, no
// locale-dependent formatting beyond the C locale's). Each series sits in `<g class="series" data-name="NAME">`
// with a `<title>NAME</title>`, so a program (or a test) can find which series a plot holds; tick labels are
// `<text class="tick-x">` / `<text class="tick-y">`.
#pragma once
#include <cstdint>   // int64_t
#include <optional>  // std::optional
#include <string>    // std::string
#include <vector>    // std::vector

namespace sllm::plot {

struct Series {
  std::string name;          // legend text (XML-escaped on output); an empty name gets no legend entry
  std::vector<double> x, y;  // same length. A point that is non-finite, beyond 1e100 in magnitude, or on a log
                             // axis below 1e-100 (so <= 0 too) is skipped and breaks the line there; an isolated
                             // point is drawn as a dot
  std::string color;         // any SVG colour; "" = the next colour of the Okabe-Ito palette (colour-blind safe)
  bool dashed = false;
  std::vector<double> y_lo, y_hi;  // optional band (e.g. min/max over seeds), both empty or both x.size() long;
                                   // drawn translucent in the series colour, broken like the line
};

struct Chart {
  std::string title, xlabel, ylabel;
  bool log_x = false, log_y = false;
  // Axis limits; unset = the data range plus 5% on that side (measured in decades on a log axis). Must be usable
  // values in the sense above (finite, |v| <= 1e100, and >= 1e-100 on a log axis).
  std::optional<double> x_min, x_max, y_min, y_max;
  int width = 760, height = 460;  // pixels; at least 200 x 150
  std::vector<Series> series;
};

// A complete standalone SVG 1.1 document. Throws sllm::Error on a malformed chart (series lengths differ, a limit
// that is non-finite or <= 0 on a log axis, min >= max, a size too small for the labels). A chart without any
// drawable point gives empty axes with a "no data" note.
std::string to_svg(const Chart& c);

// Writes to_svg(c) to path atomically (temporary file next to it, fsync, rename); sllm::Error naming the path on
// failure.
void write_svg(const Chart& c, const std::string& path);

// Attention maps side by side (the paper's Fig. 2): one n x n panel per map, cell (row t, column j) shaded by its
// value in [0, 1] (white 0 to dark blue 1, on a square-root scale so that small shares stay visible; NaN cells,
// above the diagonal of a causal map, are left blank), with a colour bar. Each panel is
// `<g class="panel" data-name="NAME">`; cells are `<rect class="cell">` with a `<title>` giving (t, j) and the value.
struct Heatmaps {
  std::string title;
  std::string xlabel = "key position", ylabel = "query position";
  int64_t n = 0;                            // cells per side
  std::vector<std::string> names;           // panel titles
  std::vector<std::vector<double>> values;  // per panel, n * n row-major
  int per_row = 4;                          // panels per row
};
// Throws sllm::Error on a malformed input (n < 1 or above 64, a panel whose size is not n * n, names and values of
// different lengths, no panel).
std::string heatmaps_to_svg(const Heatmaps& h);
void write_heatmaps_svg(const Heatmaps& h, const std::string& path);

}  // namespace sllm::plot
