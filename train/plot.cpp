// The SVG is built as one string, back to front: grid, frame, bands, lines, tick labels, legend, titles.
//
// Geometry happens in pixels. Every value is mapped to a fraction of its axis (in log10 units on a log axis),
// clamped to +-1e6 axis lengths so that outliers cannot overflow, then lines are clipped to the plot rectangle
// segment by segment (Liang-Barsky) and bands polygon by polygon (Sutherland-Hodgman). So nothing is drawn outside
// the frame without relying on an SVG clipPath, and no coordinate printed is huge or non-finite.
//
// Ticks: linear axes step by 1, 2 or 5 x 10^k, the finest step whose labels do not collide (label widths are
// estimated at 7 px per character: there are no font metrics here). Log axes take 1-2-5 labels when the range
// holds at most two decade ticks, else every decade (or every 2nd, 3rd, 5th, ... when they would collide) with
// unlabelled grid lines at 2..9; a range inside one decade falls back to linear steps placed on the log scale.
#include "train/plot.h"

#include <algorithm>  // std::min, std::max, std::clamp
#include <array>      // std::array
#include <cmath>      // std::isfinite, std::log10, std::pow, std::floor, std::ceil, std::abs
#include <cstdint>    // SIZE_MAX
#include <cstdio>     // std::snprintf
#include <cstdlib>    // std::atoi
#include <utility>    // std::move, std::pair

#include "core/error.h"        // Error
#include "train/token_data.h"  // write_file_atomic

namespace sllm::plot {

namespace {

// Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies. Yellow last: weak on white.
constexpr std::array<const char*, 8> kPalette = {"#0072B2", "#D55E00", "#009E73", "#E69F00",
                                                 "#CC79A7", "#56B4E9", "#000000", "#F0E442"};
constexpr double kCharW = 7.0;   // estimated width of one character at font-size 12
constexpr double kHuge = 1e100;  // larger magnitudes (and on a log axis, smaller than 1/kHuge) count as unusable,
                                 // so spans, padding, 10^tick and pixel maths all stay finite

bool usable(double v, bool log) { return std::isfinite(v) && std::abs(v) <= kHuge && (!log || v >= 1 / kHuge); }

std::string trim_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// A coordinate: 2 decimals, trailing zeros trimmed, never "-0" or "nan" (callers keep values finite and bounded;
// the clamp is a last guard so that the SVG stays valid whatever happens).
std::string num(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f", std::isfinite(v) ? std::clamp(v, -1e9, 1e9) : 0.0);
  const std::string s = trim_zeros(buf);
  return s == "-0" ? "0" : s;
}

// XML text and attribute values. Control characters are not allowed in XML 1.0; they become spaces.
std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
    }
  }
  return out;
}

double text_w(const std::string& s) {  // code points (UTF-8 continuation bytes do not count) x the estimate
  double n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n * kCharW;
}

// Compact tick label: 0, 0.05, 2.5, 500, 1.5k, 10k, 1M, 2B. `step` (the tick spacing, or the value itself on a log
// axis) decides the decimals, so that neighbouring labels differ.
std::string tick_label(double v, double step) {
  const double a = std::abs(v);
  if (a == 0) return "0";
  char buf[48];
  if (a < 1e-4 || a >= 1e15) {  // 1e-5, 2.5e15: printf's "1e-05", "2.5e+15" without the '+' and leading zeros
    std::snprintf(buf, sizeof buf, "%.3e", v);
    std::string s = buf;
    const size_t e = s.find('e');
    const int exponent = std::atoi(s.c_str() + e + 1);
    return trim_zeros(s.substr(0, e)) + "e" + std::to_string(exponent);
  }
  double scale = 1;
  const char* suffix = "";
  static const std::pair<double, const char*> kUnits[] = {{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "k"}};
  for (auto [u, s] : kUnits) {
    if (a >= u) {
      scale = u, suffix = s;
      break;
    }
  }
  const int decimals = std::clamp(int(-std::floor(std::log10(step / scale) + 1e-9)), 0, 6);
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v / scale);
  return trim_zeros(buf) + suffix;
}

// One axis: limits in transformed units (log10 on a log axis) and the pixels they land on.
struct Axis {
  bool log = false;
  double lo = 0, hi = 1;  // transformed limits, lo < hi
  double p0 = 0, p1 = 1;  // pixels of lo and hi (p0 > p1 on the y axis: SVG's y grows downwards)
  double t(double v) const { return log ? std::log10(v) : v; }
  double px(double v) const { return p0 + std::clamp((t(v) - lo) / (hi - lo), -1e6, 1e6) * (p1 - p0); }
  double len() const { return std::abs(p1 - p0); }
};

// Limits from the data range [dlo, dhi] (dlo > dhi when there is no data) and the caller's optional limits.
void set_limits(Axis& ax, std::optional<double> mn, std::optional<double> mx, double dlo, double dhi,
                const char* name) {
  for (auto l : {mn, mx}) {
    if (!l || usable(*l, ax.log)) continue;
    char buf[48];
    std::snprintf(buf, sizeof buf, "%g", *l);
    throw Error(std::string("plot: ") + name + " limit " + buf + " is not usable" +
                (ax.log ? " on a log axis (must be in [1e-100, 1e100])" : " (must be finite, at most 1e100 in magnitude)"));
  }
  if (!(dlo <= dhi)) dlo = ax.log ? 1 : 0, dhi = ax.log ? 10 : 1;
  double a = ax.t(dlo), b = ax.t(dhi);
  if (a == b) {  // a single value: give it some room
    const double d = ax.log ? 0.5 : (a == 0 ? 1 : std::abs(a) * 0.1);
    a -= d, b += d;
  }
  const double pad = 0.05 * (b - a);
  ax.lo = mn ? ax.t(*mn) : a - pad;
  ax.hi = mx ? ax.t(*mx) : b + pad;
  if (!(ax.hi > ax.lo)) {
    if (mn && mx) throw Error(std::string("plot: ") + name + "_min must be below " + name + "_max");
    if (mn) ax.hi = ax.lo + (b - a) + 2 * pad;
    else ax.lo = ax.hi - (b - a) - 2 * pad;
    if (ax.log) ax.lo = std::max(ax.lo, -300.0), ax.hi = std::min(ax.hi, 300.0);  // 10^limit stays a normal double
  }
}

struct Ticks {
  std::vector<double> at;           // major ticks (data units), labelled
  std::vector<std::string> labels;  // one per major tick
  std::vector<double> minor;        // unlabelled grid lines (log axes)
};

double nice_step(double raw) {  // the smallest 1, 2 or 5 x 10^k >= raw
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw * (1 - 1e-9)) return m * p;
  return 10 * p;
}

bool labels_fit(const Axis& ax, const Ticks& tk, bool horizontal) {
  for (size_t i = 1; i < tk.at.size(); ++i) {
    const double gap = std::abs(ax.px(tk.at[i]) - ax.px(tk.at[i - 1]));
    const double need = horizontal ? (text_w(tk.labels[i]) + text_w(tk.labels[i - 1])) / 2 + 10 : 18;
    if (gap < need) return false;
  }
  return true;
}

// Linear steps over data range [lo, hi], from about one tick per `spacing` pixels up until the labels fit.
Ticks linear_ticks(const Axis& ax, double lo, double hi, double spacing, bool horizontal) {
  Ticks tk;
  for (double step = nice_step((hi - lo) / std::max(2.0, ax.len() / spacing));; step = nice_step(step * 1.5)) {
    tk = {};
    const double i0 = std::ceil(lo / step - 1e-9), n = std::min(std::floor(hi / step + 1e-9) - i0, 200.0);
    for (int k = 0; k <= n; ++k) {
      if (ax.log && (i0 + k) * step <= 0) continue;  // the log fallback's range starts above 0
      tk.at.push_back((i0 + k) * step);
      tk.labels.push_back(tick_label(tk.at.back(), step));
    }
    if (tk.at.size() <= 2 || labels_fit(ax, tk, horizontal)) return tk;
  }
}

Ticks choose_ticks(const Axis& ax, bool horizontal) {
  const double spacing = horizontal ? 90 : 55;
  if (!ax.log) return linear_ticks(ax, ax.lo, ax.hi, spacing, horizontal);
  const double eps = 1e-9 * (ax.hi - ax.lo);
  const int e_first = int(std::floor(ax.lo)), e0 = int(std::ceil(ax.lo - eps)), e1 = int(std::floor(ax.hi + eps));
  const auto in = [&](double v) { return ax.t(v) >= ax.lo - eps && ax.t(v) <= ax.hi + eps; };
  if (e1 - e0 <= 1) {  // at most two decade ticks: label 1, 2, 5 x 10^k
    Ticks tk;
    for (int e = e_first; e <= e1; ++e) {
      for (double m : {1.0, 2.0, 5.0}) {
        const double v = m * std::pow(10.0, e);
        if (in(v)) tk.at.push_back(v), tk.labels.push_back(tick_label(v, v));
      }
    }
    if (tk.at.size() >= 3 && labels_fit(ax, tk, horizontal)) return tk;
  }
  if (e1 > e0) {  // every decade, or every stride-th one
    for (int stride : {1, 2, 3, 5, 10, 20, 50, 100}) {
      Ticks tk;
      for (int e = e0; e <= e1; ++e) {
        if (e % stride != 0) continue;
        tk.at.push_back(std::pow(10.0, e));
        tk.labels.push_back(tick_label(tk.at.back(), tk.at.back()));
      }
      if (tk.at.size() < 2 || !labels_fit(ax, tk, horizontal)) continue;
      if (stride == 1 && ax.len() / (ax.hi - ax.lo) >= 30) {  // decades wide enough for 2..9 grid lines
        for (int e = e_first; e <= e1; ++e)
          for (int m = 2; m <= 9; ++m)
            if (in(m * std::pow(10.0, e))) tk.minor.push_back(m * std::pow(10.0, e));
      }
      return tk;
    }
  }
  return linear_ticks(ax, std::pow(10.0, ax.lo), std::pow(10.0, ax.hi), spacing, horizontal);
}

struct Pt {
  double x, y;
};
struct Rect {
  double l, t, r, b;
};

std::string xy(Pt p) { return num(p.x) + ' ' + num(p.y); }  // a point in path data: "12.5 40"

// Liang-Barsky: clips segment a-b to the rectangle; false when nothing is left. An end inside stays bit-equal,
// which lets the path builder see that consecutive segments join.
bool clip_segment(Pt& a, Pt& b, const Rect& r) {
  const double dx = b.x - a.x, dy = b.y - a.y;
  const double p[4] = {-dx, dx, -dy, dy}, q[4] = {a.x - r.l, r.r - a.x, a.y - r.t, r.b - a.y};
  double t0 = 0, t1 = 1;
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0) {
      if (q[i] < 0) return false;
      continue;
    }
    const double t = q[i] / p[i];
    if (p[i] < 0) t0 = std::max(t0, t);
    else t1 = std::min(t1, t);
    if (t0 > t1) return false;
  }
  const Pt a0 = a;
  if (t0 > 0) a = {a0.x + t0 * dx, a0.y + t0 * dy};
  if (t1 < 1) b = {a0.x + t1 * dx, a0.y + t1 * dy};
  return true;
}

// Sutherland-Hodgman: the part of polygon `poly` inside the rectangle, one edge at a time.
std::vector<Pt> clip_polygon(std::vector<Pt> poly, const Rect& r) {
  for (int e = 0; e < 4 && !poly.empty(); ++e) {
    const double edge = e == 0 ? r.l : e == 1 ? r.r : e == 2 ? r.t : r.b;
    const auto coord = [&](Pt p) { return e < 2 ? p.x : p.y; };
    const auto inside = [&](Pt p) { return e % 2 == 0 ? coord(p) >= edge : coord(p) <= edge; };
    const auto cross = [&](Pt a, Pt b) {
      const double f = (edge - coord(a)) / (coord(b) - coord(a));
      return Pt{a.x + f * (b.x - a.x), a.y + f * (b.y - a.y)};
    };
    std::vector<Pt> out;
    for (size_t i = 0; i < poly.size(); ++i) {
      const Pt a = poly[(i + poly.size() - 1) % poly.size()], b = poly[i];
      if (inside(a) != inside(b)) out.push_back(cross(a, b));
      if (inside(b)) out.push_back(b);
    }
    poly = std::move(out);
  }
  return poly;
}

// One series in pixels: its path data, isolated points and every vertex drawn (for the legend's placement).
struct Drawn {
  std::string line, band;
  std::vector<Pt> dots, vertices;
};

Drawn draw_series(const Series& s, const Axis& xa, const Axis& ya, const Rect& r) {
  Drawn d;
  const auto at = [&](size_t i, double y) { return Pt{xa.px(s.x[i]), ya.px(y)}; };
  const auto inside = [&](Pt p) { return p.x >= r.l && p.x <= r.r && p.y >= r.t && p.y <= r.b; };
  std::string last;  // the last point written, to drop repeats (dense curves land many points on one pixel)
  Pt pen{};
  bool pen_down = false;
  size_t run = 0;  // usable points in a row so far
  for (size_t i = 0; i < s.x.size(); ++i) {
    if (!usable(s.x[i], xa.log) || !usable(s.y[i], ya.log)) {
      if (run == 1 && inside(at(i - 1, s.y[i - 1]))) d.dots.push_back(at(i - 1, s.y[i - 1]));
      run = 0, pen_down = false;
      continue;
    }
    if (run++ == 0) continue;
    Pt a = at(i - 1, s.y[i - 1]), b = at(i, s.y[i]);
    if (!clip_segment(a, b, r)) {
      pen_down = false;
      continue;
    }
    if (!pen_down || a.x != pen.x || a.y != pen.y) d.line += 'M' + xy(a), last.clear();
    if (const std::string to = xy(b); to != last) d.line += 'L' + to, last = to;
    d.vertices.push_back(a), d.vertices.push_back(b);
    pen = b, pen_down = true;
  }
  if (run == 1 && inside(at(s.x.size() - 1, s.y.back()))) d.dots.push_back(at(s.x.size() - 1, s.y.back()));
  if (s.y_lo.empty()) return d;
  // The band: one polygon per run of points whose x, y_lo and y_hi are all usable.
  for (size_t i = 0; i < s.x.size();) {
    size_t j = i;
    while (j < s.x.size() && usable(s.x[j], xa.log) && usable(s.y_lo[j], ya.log) && usable(s.y_hi[j], ya.log)) ++j;
    if (j - i >= 2) {
      std::vector<Pt> poly;
      for (size_t k = i; k < j; ++k) poly.push_back(at(k, s.y_hi[k]));
      for (size_t k = j; k-- > i;) poly.push_back(at(k, s.y_lo[k]));
      poly = clip_polygon(std::move(poly), r);
      for (size_t k = 0; k < poly.size(); ++k) d.band += (k ? 'L' : 'M') + xy(poly[k]);
      if (!poly.empty()) d.band += "Z";
    }
    i = std::max(j, i + 1);
  }
  return d;
}

std::string dash_attr(const Series& s) { return s.dashed ? R"( stroke-dasharray="6 4")" : ""; }

}  // namespace

std::string to_svg(const Chart& c) {
  if (c.width < 200 || c.height < 150)
    throw Error("plot: size " + std::to_string(c.width) + "x" + std::to_string(c.height) + " is below 200x150");
  Axis xa{.log = c.log_x}, ya{.log = c.log_y};
  double x0 = 1, x1 = 0, y0 = 1, y1 = 0;  // data ranges over usable points (empty while x0 > x1)
  const auto widen = [](double& lo, double& hi, double v) {
    if (lo > hi) lo = hi = v;
    else lo = std::min(lo, v), hi = std::max(hi, v);
  };
  std::vector<std::string> colors;
  size_t auto_colors = 0, legend_rows = 0;
  double legend_text = 0;
  for (const Series& s : c.series) {
    const bool band = !s.y_lo.empty() || !s.y_hi.empty();
    if (s.y.size() != s.x.size() || (band && (s.y_lo.size() != s.x.size() || s.y_hi.size() != s.x.size())))
      throw Error("plot: series '" + s.name + "' has " + std::to_string(s.x.size()) + " x, " +
                  std::to_string(s.y.size()) + " y, " + std::to_string(s.y_lo.size()) + " y_lo and " +
                  std::to_string(s.y_hi.size()) + " y_hi values (y must match x; y_lo/y_hi too, or be empty)");
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], c.log_x)) continue;
      const double ys[3] = {s.y[i], s.y_lo.empty() ? s.y[i] : s.y_lo[i], s.y_hi.empty() ? s.y[i] : s.y_hi[i]};
      bool any = false;
      for (double v : ys) {
        if (usable(v, c.log_y)) widen(y0, y1, v), any = true;
      }
      if (any) widen(x0, x1, s.x[i]);
    }
    colors.push_back(s.color.empty() ? kPalette[auto_colors++ % kPalette.size()] : s.color);
    if (!s.name.empty()) ++legend_rows, legend_text = std::max(legend_text, text_w(s.name));
  }
  const bool no_data = x0 > x1;
  set_limits(xa, c.x_min, c.x_max, x0, x1, "x");
  set_limits(ya, c.y_min, c.y_max, y0, y1, "y");

  // Layout: the y ticks fix the left margin, the legend (inside, or outside when large) the right one.
  const double top = c.title.empty() ? 16 : 40, bottom = c.height - (c.xlabel.empty() ? 34.0 : 54.0);
  ya.p0 = bottom, ya.p1 = top;
  const Ticks yt = choose_ticks(ya, false);
  double ylab_w = 0;
  for (const auto& l : yt.labels) ylab_w = std::max(ylab_w, text_w(l));
  const double left = 20 + (c.ylabel.empty() ? 0 : 20) + ylab_w;
  const double legend_w = legend_text + 54, legend_h = legend_rows * 18.0 + 10;
  double right = c.width - 24.0;
  // Outside when large, unless that would squeeze the plot below 120 px (then it covers part of the plot instead).
  const bool outside = legend_rows > 0 && (legend_rows > 6 || legend_w > 0.45 * (right - left)) &&
                       right - legend_w - left >= 120;
  if (outside) right -= legend_w;
  if (right - left < 40 || bottom - top < 40)
    throw Error("plot: " + std::to_string(c.width) + "x" + std::to_string(c.height) +
                " leaves no room to plot beside the labels and the legend");
  xa.p0 = left, xa.p1 = right;
  const Ticks xt = choose_ticks(xa, true);
  const Rect r{left, top, right, bottom};

  std::string o;
  const auto line = [&](auto&&... parts) { ((o += parts), ...), o += '\n'; };
  line(R"(<?xml version="1.0" encoding="UTF-8" standalone="no"?>)");
  line(R"(<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width=")", std::to_string(c.width), R"(" height=")",
       std::to_string(c.height), R"(" viewBox="0 0 )", std::to_string(c.width), " ", std::to_string(c.height),
       R"(" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="12">)");
  line("<title>", esc(c.title), "</title>");
  line(R"(<rect width="100%" height="100%" fill="white"/>)");
  // Grid: minor lines, then major ones, each set as one path.
  for (int minor = 1; minor >= 0; --minor) {
    std::string d;
    for (double v : minor ? xt.minor : xt.at) d += 'M' + xy({xa.px(v), top}) + 'V' + num(bottom);
    for (double v : minor ? yt.minor : yt.at) d += 'M' + xy({left, ya.px(v)}) + 'H' + num(right);
    if (!d.empty())
      line(R"(<path class="grid" d=")", d, R"(" stroke=")", minor ? "#f0f0f0" : "#dddddd", R"(" stroke-width="1"/>)");
  }
  line(R"(<rect class="frame" x=")", num(left), R"(" y=")", num(top), R"(" width=")", num(right - left),
       R"(" height=")", num(bottom - top), R"(" fill="none" stroke="#444444"/>)");

  std::vector<Pt> vertices;  // everything drawn, for the legend's corner
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& s = c.series[i];
    const Drawn d = draw_series(s, xa, ya, r);
    const std::string col = esc(colors[i]);
    line(R"(<g class="series" data-name=")", esc(s.name), R"(">)", "<title>", esc(s.name), "</title>");
    if (!d.band.empty())
      line(R"(  <path class="band" d=")", d.band, R"(" fill=")", col, R"(" fill-opacity="0.2" stroke="none"/>)");
    if (!d.line.empty())
      line(R"(  <path class="line" d=")", d.line, R"(" fill="none" stroke=")", col,
           R"(" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round")", dash_attr(s), "/>");
    for (Pt p : d.dots)
      line(R"(  <circle class="point" cx=")", num(p.x), R"(" cy=")", num(p.y), R"(" r="2.5" fill=")", col, R"("/>)");
    line("</g>");
    vertices.insert(vertices.end(), d.vertices.begin(), d.vertices.end());
    vertices.insert(vertices.end(), d.dots.begin(), d.dots.end());
  }

  // Tick marks and labels.
  std::string marks;
  for (double v : xt.at) marks += 'M' + xy({xa.px(v), bottom}) + "v5";
  for (double v : yt.at) marks += 'M' + xy({left, ya.px(v)}) + "h-5";
  line(R"(<path class="ticks" d=")", marks, R"(" stroke="#444444"/>)");
  for (size_t i = 0; i < xt.at.size(); ++i)
    line(R"(<text class="tick-x" x=")", num(xa.px(xt.at[i])), R"(" y=")", num(bottom + 18),
         R"(" text-anchor="middle">)", esc(xt.labels[i]), "</text>");
  for (size_t i = 0; i < yt.at.size(); ++i)
    line(R"(<text class="tick-y" x=")", num(left - 8), R"(" y=")", num(ya.px(yt.at[i]) + 4),
         R"(" text-anchor="end">)", esc(yt.labels[i]), "</text>");

  // Legend: outside on the right, or inside in the corner (top-right first) that covers the fewest drawn points.
  if (legend_rows > 0) {
    Pt at{right + 12, top};
    if (!outside) {
      size_t best = SIZE_MAX;
      for (Pt corner : {Pt{right - 8 - legend_w, top + 8}, Pt{right - 8 - legend_w, bottom - 8 - legend_h},
                        Pt{left + 8, top + 8}, Pt{left + 8, bottom - 8 - legend_h}}) {
        size_t n = 0;
        for (Pt p : vertices)
          n += p.x >= corner.x && p.x <= corner.x + legend_w && p.y >= corner.y && p.y <= corner.y + legend_h;
        if (n < best) best = n, at = corner;
      }
    }
    line(R"(<g class="legend">)");
    line(R"(  <rect x=")", num(at.x), R"(" y=")", num(at.y), R"(" width=")", num(legend_w), R"(" height=")",
         num(legend_h), R"(" fill="white" fill-opacity="0.85" stroke="#999999"/>)");
    double y = at.y + 5 + 9;  // centre of the first row
    for (size_t i = 0; i < c.series.size(); ++i) {
      const Series& s = c.series[i];
      if (s.name.empty()) continue;
      const std::string col = esc(colors[i]);
      if (!s.y_lo.empty())
        line(R"(  <rect x=")", num(at.x + 8), R"(" y=")", num(y - 6), R"(" width="28" height="12" fill=")", col,
             R"(" fill-opacity="0.2"/>)");
      line(R"(  <path d="M)", num(at.x + 8), " ", num(y), R"(h28" stroke=")", col, R"(" stroke-width="1.8")",
           dash_attr(s), "/>");
      line(R"(  <text x=")", num(at.x + 44), R"(" y=")", num(y + 4), R"(">)", esc(s.name), "</text>");
      y += 18;
    }
    line("</g>");
  }

  if (!c.title.empty())
    line(R"(<text class="title" x=")", num(c.width / 2.0), R"(" y="24" text-anchor="middle" font-size="15")",
         R"( font-weight="bold">)", esc(c.title), "</text>");
  if (!c.xlabel.empty())
    line(R"(<text class="xlabel" x=")", num((left + right) / 2), R"(" y=")", num(c.height - 12.0),
         R"(" text-anchor="middle">)", esc(c.xlabel), "</text>");
  if (!c.ylabel.empty())
    line(R"(<text class="ylabel" transform="translate(18 )", num((top + bottom) / 2),
         ") rotate(-90)\" text-anchor=\"middle\">", esc(c.ylabel), "</text>");
  if (no_data)
    line(R"(<text class="note" x=")", num((left + right) / 2), R"(" y=")", num((top + bottom) / 2),
         R"(" text-anchor="middle" fill="#777777">no data</text>)");
  line("</svg>");
  return o;
}

void write_svg(const Chart& c, const std::string& path) { train::write_file_atomic(path, to_svg(c)); }

namespace {
// White -> dark blue, by t in [0, 1].
std::string shade(double t) {
  t = std::clamp(t, 0.0, 1.0);
  const auto ch = [t](double lo, double hi) { return int(std::lround(lo + (hi - lo) * t)); };
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", ch(255, 8), ch(255, 48), ch(255, 107));
  return buf;
}
}  // namespace

std::string heatmaps_to_svg(const Heatmaps& h) {
  if (h.n < 1 || h.n > 64) throw Error("plot: heatmaps of " + std::to_string(h.n) + " cells per side (1..64)");
  if (h.values.empty() || h.values.size() != h.names.size())
    throw Error("plot: " + std::to_string(h.values.size()) + " heatmaps and " + std::to_string(h.names.size()) +
                " names (at least one of each, as many names as maps)");
  for (size_t p = 0; p < h.values.size(); ++p)
    if (h.values[p].size() != size_t(h.n * h.n))
      throw Error("plot: heatmap '" + h.names[p] + "' has " + std::to_string(h.values[p].size()) + " values, not " +
                  std::to_string(h.n * h.n));
  const int per_row = std::max(1, std::min<int>(h.per_row, int(h.values.size())));
  const int rows = int((h.values.size() + size_t(per_row) - 1) / size_t(per_row));
  const double cell = std::max(6.0, 192.0 / double(h.n)), side = cell * double(h.n);
  const double left = 56, top = h.title.empty() ? 24 : 48, gap_x = 28, gap_y = 48, bar_w = 14;
  const double width = left + per_row * side + (per_row - 1) * gap_x + 36 + bar_w + 40;
  const double height = top + rows * (side + gap_y) + 16;
  std::string o;
  const auto line = [&](auto&&... parts) { ((o += parts), ...), o += '\n'; };
  line(R"(<?xml version="1.0" encoding="UTF-8" standalone="no"?>)");
  line(R"(<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width=")", num(width), R"(" height=")", num(height),
       R"(" viewBox="0 0 )", num(width), " ", num(height),
       R"(" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="12">)");
  line("<title>", esc(h.title), "</title>");
  line(R"(<rect width="100%" height="100%" fill="white"/>)");
  if (!h.title.empty())
    line(R"(<text class="title" x=")", num(width / 2), R"(" y="24" text-anchor="middle" font-size="15")",
         R"( font-weight="bold">)", esc(h.title), "</text>");
  const int64_t step = h.n <= 10 ? 1 : h.n <= 24 ? 2 : h.n <= 40 ? 4 : 8;  // position labels every `step` cells
  for (size_t p = 0; p < h.values.size(); ++p) {
    const double x0 = left + double(p % size_t(per_row)) * (side + gap_x);
    const double y0 = top + double(p / size_t(per_row)) * (side + gap_y) + 16;
    line(R"(<g class="panel" data-name=")", esc(h.names[p]), R"(">)");
    line(R"(  <text x=")", num(x0 + side / 2), R"(" y=")", num(y0 - 6), R"(" text-anchor="middle">)",
         esc(h.names[p]), "</text>");
    for (int64_t t = 0; t < h.n; ++t)
      for (int64_t j = 0; j < h.n; ++j) {
        const double v = h.values[p][size_t(t * h.n + j)];
        if (!std::isfinite(v)) continue;
        char tip[96];
        std::snprintf(tip, sizeof tip, "query %lld, key %lld: %.4f", (long long)t, (long long)j, v);
        line(R"(  <rect class="cell" x=")", num(x0 + double(j) * cell), R"(" y=")", num(y0 + double(t) * cell),
             R"(" width=")", num(cell), R"(" height=")", num(cell), R"(" fill=")",
             shade(std::sqrt(std::clamp(v, 0.0, 1.0))), R"("><title>)", tip, "</title></rect>");
      }
    line(R"(  <rect x=")", num(x0), R"(" y=")", num(y0), R"(" width=")", num(side), R"(" height=")", num(side),
         R"(" fill="none" stroke="#999999"/>)");
    for (int64_t i = 0; i < h.n; i += step) {
      const double c = (double(i) + 0.5) * cell;
      line(R"(  <text class="tick-x" x=")", num(x0 + c), R"(" y=")", num(y0 + side + 13),
           R"(" text-anchor="middle" font-size="9">)", std::to_string(i), "</text>");
      if (p % size_t(per_row) == 0)
        line(R"(  <text class="tick-y" x=")", num(x0 - 4), R"(" y=")", num(y0 + c + 3),
             R"(" text-anchor="end" font-size="9">)", std::to_string(i), "</text>");
    }
    line("</g>");
  }
  // Labels and the colour bar (square-root scale: ticks at 0, 0.01, 0.1, 0.25, 0.5, 1).
  line(R"(<text class="xlabel" x=")", num(left + (per_row * side + (per_row - 1) * gap_x) / 2), R"(" y=")",
       num(height - 4), R"(" text-anchor="middle">)", esc(h.xlabel), "</text>");
  line(R"(<text class="ylabel" transform="translate(16 )", num(top + rows * (side + gap_y) / 2),
       ") rotate(-90)\" text-anchor=\"middle\">", esc(h.ylabel), "</text>");
  const double bx = left + per_row * side + (per_row - 1) * gap_x + 36, by = top + 16;
  const int steps = 32;
  line(R"(<g class="colorbar">)");
  for (int i = 0; i < steps; ++i)
    line(R"(  <rect x=")", num(bx), R"(" y=")", num(by + side * double(i) / steps), R"(" width=")", num(bar_w),
         R"(" height=")", num(side / steps + 0.5), R"(" fill=")", shade(1.0 - (double(i) + 0.5) / steps), R"("/>)");
  line(R"(  <rect x=")", num(bx), R"(" y=")", num(by), R"(" width=")", num(bar_w), R"(" height=")", num(side),
       R"(" fill="none" stroke="#999999"/>)");
  for (const double v : {0.0, 0.01, 0.1, 0.25, 0.5, 1.0})
    line(R"(  <text x=")", num(bx + bar_w + 4), R"(" y=")", num(by + side * (1 - std::sqrt(v)) + 4),
         R"(" font-size="9">)", trim_zeros(std::to_string(v)), "</text>");
  line("</g>");
  line("</svg>");
  return o;
}

void write_heatmaps_svg(const Heatmaps& h, const std::string& path) {
  train::write_file_atomic(path, heatmaps_to_svg(h));
}

}  // namespace sllm::plot
