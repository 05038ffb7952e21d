// SVG chart writer tests: well-formed XML (checked by a small tag scanner below), one findable group per series
// with escaped names, nice tick values on linear and log axes, skipped non-finite and non-positive (log) points
// that never print "nan"/"inf", clipping to the frame, bands, the legend moving outside for many series,
// byte-equal output for equal input, random awkward charts (well-formed, no overlapping tick labels), and atomic
// writes with one-line errors. SLLM_PLOT_SAMPLES=<dir> makes Plot.SamplesForEyes write sample plots to look at.
#include <gtest/gtest.h>

#include <algorithm>   // std::find
#include <cctype>      // std::isalnum, std::isspace, std::tolower
#include <cmath>       // std::nan, std::exp, INFINITY
#include <cstdlib>     // std::getenv
#include <cstring>     // std::strlen
#include <filesystem>  // std::filesystem
#include <fstream>     // std::ifstream, std::ofstream
#include <iterator>    // std::size
#include <random>      // std::mt19937
#include <regex>       // std::regex
#include <sstream>     // std::stringstream
#include <string>      // std::string
#include <tuple>       // std::tuple
#include <unistd.h>    // getpid
#include <vector>      // std::vector

#include "core/error.h"  // Error
#include "train/plot.h"  // Chart, Series, to_svg, write_svg

namespace fs = std::filesystem;
using sllm::plot::Chart;
using sllm::plot::Series;

namespace {

// A minimal XML well-formedness check: one root element, balanced and properly nested tags, quoted attributes
// without '<' and without repeats, '&' only in the five named entities or a character reference, no raw '>' in
// text. Returns "" when the document passes, else what is wrong and where.
std::string xml_error(const std::string& s) {
  const auto entity_ok = [&](size_t i) {
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
      if (s.compare(i, std::strlen(e), e) == 0) return true;
    return std::regex_search(s.substr(i, 12), std::regex("^&#(x[0-9a-fA-F]+|[0-9]+);"));
  };
  const auto name_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == '.'; };
  std::vector<std::string> open;
  int roots = 0;
  for (size_t i = 0; i < s.size();) {
    const std::string at = " at byte " + std::to_string(i);
    if (s[i] != '<') {
      if (s[i] == '>') return "raw '>' in text" + at;
      if (s[i] == '&' && !entity_ok(i)) return "bare '&' in text" + at;
      if (open.empty() && !std::isspace(static_cast<unsigned char>(s[i]))) return "text outside the root" + at;
      ++i;
      continue;
    }
    if (s.compare(i, 2, "<?") == 0 || s.compare(i, 4, "<!--") == 0) {
      const std::string end = s[i + 1] == '?' ? "?>" : "-->";
      const size_t e = s.find(end, i);
      if (e == std::string::npos) return "unterminated " + s.substr(i, 4) + at;
      i = e + end.size();
      continue;
    }
    const bool closing = s.compare(i, 2, "</") == 0;
    size_t j = i + (closing ? 2 : 1);
    const size_t n0 = j;
    while (j < s.size() && name_char(s[j])) ++j;
    const std::string name = s.substr(n0, j - n0);
    if (name.empty()) return "tag without a name" + at;
    if (closing) {
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size() || s[j] != '>') return "malformed </" + name + ">" + at;
      if (open.empty() || open.back() != name)
        return "</" + name + "> closes " + (open.empty() ? std::string("nothing") : "<" + open.back() + ">") + at;
      open.pop_back();
      i = j + 1;
      continue;
    }
    std::vector<std::string> attrs;
    for (;;) {
      const size_t before = j;
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return "unterminated <" + name + ">" + at;
      if (s[j] == '>' || s.compare(j, 2, "/>") == 0) break;
      if (j == before) return "no space before an attribute of <" + name + ">" + at;
      const size_t a0 = j;
      while (j < s.size() && name_char(s[j])) ++j;
      const std::string attr = s.substr(a0, j - a0);
      if (attr.empty() || s.compare(j, 2, "=\"") != 0) return "malformed attribute in <" + name + ">" + at;
      if (std::find(attrs.begin(), attrs.end(), attr) != attrs.end()) return "repeated attribute " + attr + at;
      attrs.push_back(attr);
      for (j += 2; j < s.size() && s[j] != '"'; ++j) {
        if (s[j] == '<') return "'<' in attribute " + attr + at;
        if (s[j] == '&' && !entity_ok(j)) return "bare '&' in attribute " + attr + at;
      }
      if (j >= s.size()) return "unterminated attribute " + attr + at;
      ++j;
    }
    if (open.empty() && roots++ > 0) return "a second root element" + at;
    const bool self_closing = s[j] == '/';
    if (!self_closing) open.push_back(name);
    i = j + (self_closing ? 2 : 1);
  }
  if (!open.empty()) return "<" + open.back() + "> is never closed";
  return roots == 1 ? "" : "no root element";
}

// The texts of every element <text class="cls" ...>TEXT</text>, in document order.
std::vector<std::string> texts(const std::string& svg, const std::string& cls) {
  std::vector<std::string> out;
  const std::regex re("<text class=\"" + cls + "\"[^>]*>([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

// Whether neighbouring tick labels of an axis overlap, estimating glyphs at 6 px (the writer assumes 7) and a
// line at 14 px.
bool labels_overlap(const std::string& svg, bool x_axis) {
  const std::regex re(std::string("<text class=\"tick-") + (x_axis ? "x" : "y") +
                      "\" x=\"([-0-9.]+)\" y=\"([-0-9.]+)\"[^>]*>([^<]*)</text>");
  double prev_pos = 0, prev_w = 0;
  bool first = true;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    const double pos = std::stod((*it)[x_axis ? 1 : 2]), w = 6.0 * double((*it)[3].length());
    if (!first && std::abs(pos - prev_pos) < (x_axis ? (w + prev_w) / 2 : 14.0)) return true;
    prev_pos = pos, prev_w = w, first = false;
  }
  return false;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t i = s.find(what); i != std::string::npos; i = s.find(what, i + 1)) ++n;
  return n;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The `d` attribute of each <path class="line">, in document order.
std::vector<std::string> line_paths(const std::string& svg) {
  std::vector<std::string> out;
  const std::regex re("<path class=\"line\" d=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

// Every number in a path's data.
std::vector<double> path_numbers(const std::string& d) {
  std::vector<double> out;
  const std::regex re("-?[0-9]+(\\.[0-9]+)?");
  for (auto it = std::sregex_iterator(d.begin(), d.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back(std::stod(it->str()));
  return out;
}

// The plot area's left, top, right and bottom pixel, from <rect class="frame">.
std::tuple<double, double, double, double> frame(const std::string& svg) {
  std::smatch m;
  const std::regex re(R"re(<rect class="frame" x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)")re");
  if (!std::regex_search(svg, m, re)) return {0, 0, 0, 0};
  const double l = std::stod(m[1]), t = std::stod(m[2]);
  return {l, t, l + std::stod(m[3]), t + std::stod(m[4])};
}

Series line(const std::string& name, std::vector<double> x, std::vector<double> y) {
  Series s;
  s.name = name, s.x = std::move(x), s.y = std::move(y);
  return s;
}

// Three loss curves like an ablation's: variants, one dashed, one with a min/max band over seeds.
Chart loss_chart() {
  Chart c;
  c.title = "Training loss", c.xlabel = "step", c.ylabel = "loss";
  for (int v = 0; v < 3; ++v) {
    Series s;
    s.name = std::vector<std::string>{"vanilla", "zero sink", "learnable sink"}[size_t(v)];
    for (int step = 0; step <= 2000; step += 20) {
      const double loss = 3.0 + 7.5 * std::exp(-step / (300.0 + 40 * v)) + 0.05 * std::sin(step * 0.37 + v);
      s.x.push_back(step), s.y.push_back(loss);
      if (v == 2) s.y_lo.push_back(loss - 0.15), s.y_hi.push_back(loss + 0.2);
    }
    s.dashed = v == 1;
    c.series.push_back(s);
  }
  return c;
}

// Log-ppl versus tokens streamed, log x: dense attention blows up past its training length, the others stay flat.
Chart ppl_chart() {
  Chart c;
  c.title = "Streaming perplexity", c.xlabel = "tokens", c.ylabel = "perplexity", c.log_x = true, c.log_y = true;
  const char* names[] = {"dense", "window", "streaming 4+1020"};
  for (int p = 0; p < 3; ++p) {
    Series s;
    s.name = names[p];
    for (double t = 10; t <= 2e5; t *= 1.2) {
      double ppl = 20 + 200 / std::sqrt(t);
      if (p == 0 && t > 4096) ppl *= std::pow(t / 4096, 1.5);
      if (p == 1 && t > 1024) ppl *= 3.5;
      s.x.push_back(t), s.y.push_back(ppl);
    }
    c.series.push_back(s);
  }
  return c;
}

std::string temp_dir(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() / ("sllm_test_plot_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

}  // namespace

TEST(Plot, WellFormedWithOneGroupPerSeries) {
  const Chart c = loss_chart();
  const std::string svg = sllm::plot::to_svg(c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find(R"(<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="760" height="460")"),
            std::string::npos);
  EXPECT_EQ(count(svg, R"(<g class="series")"), 3u);
  for (const char* name : {"vanilla", "zero sink", "learnable sink"}) {
    EXPECT_NE(svg.find(std::string(R"(<g class="series" data-name=")") + name + R"("><title>)" + name + "</title>"),
              std::string::npos)
        << name;
  }
  EXPECT_EQ(count(svg, R"(<path class="line")"), 3u);
  EXPECT_EQ(count(svg, R"(<path class="band")"), 1u);
  EXPECT_EQ(count(svg, R"(stroke-dasharray="6 4")"), 2u);  // the dashed line and its legend swatch
  EXPECT_EQ(texts(svg, "title"), std::vector<std::string>{"Training loss"});
  EXPECT_EQ(texts(svg, "xlabel"), std::vector<std::string>{"step"});
  EXPECT_EQ(texts(svg, "ylabel"), std::vector<std::string>{"loss"});
  EXPECT_EQ(svg.find("no data"), std::string::npos);
  // Automatic colours: the first three of the Okabe-Ito palette, in order.
  const size_t blue = svg.find("#0072B2"), red = svg.find("#D55E00"), green = svg.find("#009E73");
  EXPECT_TRUE(blue < red && red < green);
}

TEST(Plot, NamesAndTitlesAreEscaped) {
  Chart c;
  c.title = "loss <small> & \"big\"";
  c.xlabel = "x's";
  c.series.push_back(line("a<b & \"c\" 'd'>", {1, 2, 3}, {1, 2, 3}));
  c.series.back().color = "red\" onload=\"x";
  const std::string svg = sllm::plot::to_svg(c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_NE(svg.find(R"(data-name="a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;")"), std::string::npos);
  EXPECT_NE(svg.find("<title>loss &lt;small&gt; &amp; &quot;big&quot;</title>"), std::string::npos);
  EXPECT_EQ(svg.find("a<b"), std::string::npos);
  EXPECT_EQ(svg.find("onload=\""), std::string::npos);
}

TEST(Plot, LinearTicksAreNiceNumbers) {
  Chart c;
  c.series.push_back(line("s", {0, 50, 97}, {0, 97, 40}));
  const std::string svg = sllm::plot::to_svg(c);
  const std::vector<std::string> tens = {"0", "20", "40", "60", "80", "100"};
  EXPECT_EQ(texts(svg, "tick-x"), tens);
  EXPECT_EQ(texts(svg, "tick-y"), tens);

  // Explicit limits are kept as they are; big x values get compact labels.
  c.x_min = 0, c.x_max = 5000, c.series[0].x = {0, 2500, 5000};
  c.y_min = 2.5, c.y_max = 4, c.series[0].y = {3, 3.5, 3.2};
  const std::string svg2 = sllm::plot::to_svg(c);
  EXPECT_EQ(texts(svg2, "tick-x"), (std::vector<std::string>{"0", "1k", "2k", "3k", "4k", "5k"}));
  EXPECT_EQ(texts(svg2, "tick-y"), (std::vector<std::string>{"2.5", "3", "3.5", "4"}));

  // A loss curve's range: k-suffixed steps on x, steps of 2 on y.
  const std::string loss = sllm::plot::to_svg(loss_chart());
  EXPECT_EQ(texts(loss, "tick-x"), (std::vector<std::string>{"0", "500", "1k", "1.5k", "2k"}));
  EXPECT_EQ(texts(loss, "tick-y"), (std::vector<std::string>{"4", "6", "8", "10"}));
}

TEST(Plot, LogTicksAreDecadesOrOneTwoFive) {
  Chart c;
  c.log_x = c.log_y = true;
  c.series.push_back(line("s", {1, 1e3, 1e6}, {2, 30, 500}));
  const std::string svg = sllm::plot::to_svg(c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(texts(svg, "tick-x"), (std::vector<std::string>{"1", "10", "100", "1k", "10k", "100k", "1M"}));
  // About two decades: 1, 2, 5 x 10^k.
  EXPECT_EQ(texts(svg, "tick-y"), (std::vector<std::string>{"2", "5", "10", "20", "50", "100", "200", "500"}));
  // Decades carry unlabelled 2..9 grid lines: a second (minor) grid path.
  EXPECT_EQ(count(svg, R"(<path class="grid")"), 2u);

  // Inside one decade there is no decade to label: linear steps on the log scale.
  c.series[0].y = {2.3, 4, 5.1};
  EXPECT_EQ(texts(sllm::plot::to_svg(c), "tick-y"), (std::vector<std::string>{"2.5", "3", "3.5", "4", "4.5", "5"}));

  // Thirty decades on the x axis: every decade would collide, so every third one.
  c.series[0].x = {1e-10, 1, 1e20};
  const std::string wide = sllm::plot::to_svg(c);
  EXPECT_EQ(texts(wide, "tick-x"),
            (std::vector<std::string>{"1e-9", "1e-6", "0.001", "1", "1k", "1M", "1B", "1T", "1e15", "1e18", "1e21"}));
  EXPECT_FALSE(labels_overlap(wide, true));
}

TEST(Plot, LogAxesSkipNonPositivePoints) {
  Chart c;
  c.log_x = c.log_y = true;
  c.series.push_back(line("s", {-1, 0, 1, 10, 100, 1000, 1e4}, {5, 5, 5, 6, 0, 8, 9}));
  const std::string svg = sllm::plot::to_svg(c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(lower(svg).find("nan"), std::string::npos);
  EXPECT_EQ(lower(svg).find("inf"), std::string::npos);
  // x = -1, 0 are dropped; y = 0 breaks the line into (1, 10) and (1000, 1e4): two sub-paths of one segment each.
  const auto paths = line_paths(svg);
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(count(paths[0], "M"), 2u);
  EXPECT_EQ(count(paths[0], "L"), 2u);
  EXPECT_EQ(texts(svg, "tick-x"), (std::vector<std::string>{"1", "10", "100", "1k", "10k"}));
  // A non-positive explicit limit on a log axis is a caller's error, named.
  c.y_min = 0;
  try {
    sllm::plot::to_svg(c);
    ADD_FAILURE() << "expected an error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("y limit 0 is not usable on a log axis (must be in [1e-100, 1e100])"), std::string::npos) << e.what();
  }
}

TEST(Plot, NonFinitePointsNeverReachTheSvg) {
  const double nan = std::nan(""), inf = INFINITY;
  Chart c;
  c.series.push_back(line("gaps", {0, 1, 2, nan, 4, 5, 6, 7, 8}, {1, 2, inf, 3, 4, 5, -inf, 7, 1e300}));
  c.series.back().y_lo = {0, 1, 1, 1, nan, 3, 4, 5, 6};
  c.series.back().y_hi = {2, 3, 3, 3, 5, 6, 7, 8, 9};
  c.series.push_back(line("all bad", {nan, inf, 1}, {1, 2, nan}));
  const std::string svg = sllm::plot::to_svg(c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(lower(svg).find("nan"), std::string::npos);
  EXPECT_EQ(lower(svg).find("inf"), std::string::npos);
  EXPECT_EQ(lower(svg).find("e+"), std::string::npos);  // no huge coordinate from 1e300
  // "gaps": segments 0-1 and 4-5, the lone point 7 as a dot; "all bad" is present but draws nothing.
  const auto paths = line_paths(svg);
  ASSERT_EQ(paths.size(), 1u);
  EXPECT_EQ(count(paths[0], "M"), 2u);
  EXPECT_EQ(count(svg, R"(<circle class="point")"), 1u);
  EXPECT_NE(svg.find(R"(<g class="series" data-name="all bad">)"), std::string::npos);
  EXPECT_EQ(svg.find("no data"), std::string::npos);
  // The y range comes from the usable points: 1e300 is not usable (beyond 1e100), the band's 9 is.
  EXPECT_EQ(texts(svg, "tick-y").back(), "8");
}

TEST(Plot, EmptyChartsShowANote) {
  Chart empty;
  std::string svg = sllm::plot::to_svg(empty);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_NE(svg.find(">no data</text>"), std::string::npos);
  EXPECT_EQ(count(svg, R"(<g class="series")"), 0u);

  Chart bad;
  bad.title = "all unusable", bad.log_y = true;
  bad.series.push_back(line("s", {1, 2, 3}, {std::nan(""), -1, 0}));
  bad.series.push_back(line("t", {}, {}));
  svg = sllm::plot::to_svg(bad);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_NE(svg.find(">no data</text>"), std::string::npos);
  EXPECT_EQ(count(svg, R"(<g class="series")"), 2u);
  EXPECT_EQ(line_paths(svg).size(), 0u);
  EXPECT_EQ(lower(svg).find("nan<"), std::string::npos);
  EXPECT_EQ(lower(svg).find("inf"), std::string::npos);
}

TEST(Plot, LinesAreClippedToTheFrame) {
  Chart c;
  c.x_min = 0, c.x_max = 10, c.y_min = 0, c.y_max = 10;
  c.series.push_back(line("s", {-100, 5, 1e6}, {5, 5, 1e6}));
  const std::string svg = sllm::plot::to_svg(c);
  const auto [l, t, r, b] = frame(svg);
  const auto paths = line_paths(svg);
  ASSERT_EQ(paths.size(), 1u);
  const std::vector<double> v = path_numbers(paths[0]);
  ASSERT_EQ(v.size() % 2, 0u);
  ASSERT_GE(v.size(), 4u);
  for (size_t i = 0; i < v.size(); i += 2) {
    EXPECT_GE(v[i], l - 0.01);
    EXPECT_LE(v[i], r + 0.01);
    EXPECT_GE(v[i + 1], t - 0.01);
    EXPECT_LE(v[i + 1], b + 0.01);
  }
  EXPECT_NEAR(v[0], l, 0.01);  // enters at the left edge
}

TEST(Plot, ManySeriesPutTheLegendOutside) {
  Chart c;
  for (int i = 0; i < 9; ++i) c.series.push_back(line("policy " + std::to_string(i), {0, 1}, {double(i), i + 1.0}));
  const std::string svg = sllm::plot::to_svg(c);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(count(svg, R"(<g class="series")"), 9u);
  std::smatch legend;
  ASSERT_TRUE(std::regex_search(svg, legend, std::regex(R"re(<g class="legend">\n  <rect x="([0-9.]+)")re")));
  EXPECT_GT(std::stod(legend[1]), std::get<2>(frame(svg)));
  // The palette has 8 colours; the 9th series starts it again.
  EXPECT_EQ(count(svg, "#0072B2"), 4u);  // two lines, two legend swatches
}

TEST(Plot, OutputIsDeterministic) {
  const Chart a = ppl_chart();
  const std::string first = sllm::plot::to_svg(a);
  EXPECT_EQ(xml_error(first), "");
  Chart b = a;
  EXPECT_EQ(sllm::plot::to_svg(b), first);
  EXPECT_EQ(sllm::plot::to_svg(a), first);
  // Coordinates carry at most 2 decimals.
  EXPECT_FALSE(std::regex_search(first, std::regex("[0-9]\\.[0-9]{3}")));
}

// Random charts with every kind of awkward value (NaN, +-inf, 0, negatives, 1e300, denormals, equal values, limits
// that exclude all data): the SVG is always well-formed, finite and produced quickly, or the chart is refused
// with an sllm::Error.
TEST(Plot, RandomChartsStayWellFormed) {
  std::mt19937 rng(1234);
  const double odd[] = {std::nan(""), INFINITY, -INFINITY, 0, -1, 1e300, -1e300, 5e-324, 1e-200, 1e100, 7, 7};
  const auto value = [&] {
    const int kind = int(rng() % 4);
    if (kind == 0) return odd[rng() % std::size(odd)];
    if (kind == 1) return std::pow(10.0, double(rng() % 40) - 20.0);
    return double(int(rng() % 2001) - 1000) / 10.0;
  };
  int refused = 0;
  for (int trial = 0; trial < 300; ++trial) {
    Chart c;
    c.log_x = rng() % 2, c.log_y = rng() % 2;
    if (rng() % 4 == 0) c.x_min = value();
    if (rng() % 4 == 0) c.y_max = value();
    for (int k = int(rng() % 4); k > 0; --k) {
      Series s = line(std::string(size_t(k), 's'), {}, {});
      const bool band = rng() % 3 == 0;
      for (int n = int(rng() % 12); n > 0; --n) {
        s.x.push_back(value()), s.y.push_back(value());
        if (band) s.y_lo.push_back(value()), s.y_hi.push_back(value());
      }
      c.series.push_back(s);
    }
    std::string svg;
    try {
      svg = sllm::plot::to_svg(c);
    } catch (const sllm::Error&) {
      ++refused;
      continue;
    }
    ASSERT_EQ(xml_error(svg), "") << "trial " << trial;
    ASSERT_EQ(lower(svg).find("nan"), std::string::npos) << "trial " << trial;
    ASSERT_EQ(lower(svg).find("inf"), std::string::npos) << "trial " << trial;
    ASSERT_FALSE(labels_overlap(svg, true)) << "trial " << trial;
    ASSERT_FALSE(labels_overlap(svg, false)) << "trial " << trial;
  }
  EXPECT_LT(refused, 150) << refused;  // only bad explicit limits are refused
}

TEST(Plot, MalformedChartsAreNamedErrors) {
  Chart c;
  c.series.push_back(line("short one", {1, 2, 3}, {1, 2}));
  try {
    sllm::plot::to_svg(c);
    ADD_FAILURE() << "expected an error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("series 'short one' has 3 x, 2 y"), std::string::npos) << e.what();
  }
  c.series[0].y = {1, 2, 3}, c.series[0].y_lo = {1, 2, 3};  // y_hi missing
  EXPECT_THROW(sllm::plot::to_svg(c), sllm::Error);
  c.series[0].y_hi = {1, 2, 3};
  c.x_min = 5, c.x_max = 5;
  EXPECT_THROW(sllm::plot::to_svg(c), sllm::Error);
  c.x_min.reset(), c.x_max.reset(), c.width = 50;
  EXPECT_THROW(sllm::plot::to_svg(c), sllm::Error);
  c.width = 200, c.height = 150, c.title = "small", c.xlabel = "x", c.ylabel = "y";  // the smallest size still works
  EXPECT_EQ(xml_error(sllm::plot::to_svg(c)), "");
}

TEST(Plot, WriteSvgIsAtomicAndNamesAnUnwritablePath) {
  const std::string dir = temp_dir("write");
  const std::string path = dir + "/loss.svg";
  { std::ofstream(path) << "old contents"; }
  const Chart c = loss_chart();
  sllm::plot::write_svg(c, path);
  std::stringstream got;
  got << std::ifstream(path).rdbuf();
  EXPECT_EQ(got.str(), sllm::plot::to_svg(c));
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u);  // no temporary left behind

  for (const std::string& bad : {dir + "/no/such/dir/plot.svg", path + "/plot.svg"}) {
    try {
      sllm::plot::write_svg(c, bad);
      ADD_FAILURE() << "expected an error for " << bad;
    } catch (const sllm::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(bad), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  got.str("");
  got << std::ifstream(path).rdbuf();
  EXPECT_EQ(got.str(), sllm::plot::to_svg(c));  // untouched by the failures
  fs::remove_all(dir);
}

// Attention maps: well-formed, one panel group per map with its (escaped) name, one cell per finite value (the NaN
// upper triangle of a causal map is left out), the value in each cell's title, a darker shade for a larger value,
// deterministic bytes, and named errors for malformed input.
TEST(Plot, HeatmapsOfCausalAttention) {
  sllm::plot::Heatmaps h;
  h.title = "attention <maps>";
  h.n = 5;
  for (int l = 0; l < 3; ++l) {
    std::vector<double> m(25, std::nan(""));
    for (int t = 0; t < 5; ++t)
      for (int j = 0; j <= t; ++j) m[size_t(t * 5 + j)] = j == 0 ? 0.9 - 0.1 * l : 0.1 / (t + 1);
    h.names.push_back("layer " + std::to_string(l) + (l == 2 ? " & last" : ""));
    h.values.push_back(m);
  }
  h.per_row = 2;
  const std::string svg = sllm::plot::heatmaps_to_svg(h);
  EXPECT_EQ(xml_error(svg), "");
  EXPECT_EQ(svg, sllm::plot::heatmaps_to_svg(h));
  EXPECT_NE(svg.find(R"(<g class="panel" data-name="layer 2 &amp; last">)"), std::string::npos);
  EXPECT_NE(svg.find("attention &lt;maps&gt;"), std::string::npos);
  size_t cells = 0;
  for (size_t i = svg.find("class=\"cell\""); i != std::string::npos; i = svg.find("class=\"cell\"", i + 1)) ++cells;
  EXPECT_EQ(cells, 3u * 15u);  // the lower triangles only
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_NE(svg.find("query 4, key 0: 0.9000"), std::string::npos);
  // A larger share is darker: the fill of (4, 0) at 0.9 against (4, 4) at 0.02 (red channel: 255 = white).
  const auto red = [&](const std::string& tip) {
    const size_t at = svg.rfind("fill=\"#", svg.find(tip));
    return std::stoi(svg.substr(at + 7, 2), nullptr, 16);
  };
  EXPECT_LT(red("query 4, key 0: 0.9000"), red("query 4, key 4: 0.0200"));
  for (auto bad : {0, 65}) {
    sllm::plot::Heatmaps b = h;
    b.n = bad;
    EXPECT_THROW(sllm::plot::heatmaps_to_svg(b), sllm::Error);
  }
  sllm::plot::Heatmaps b = h;
  b.values[1].pop_back();
  try {
    sllm::plot::heatmaps_to_svg(b);
    ADD_FAILURE() << "expected an error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("heatmap 'layer 1' has 24 values, not 25"), std::string::npos) << e.what();
  }
  b = h;
  b.names.pop_back();
  EXPECT_THROW(sllm::plot::heatmaps_to_svg(b), sllm::Error);
}

// Not a check: writes the sample plots for a person to look at (SLLM_PLOT_SAMPLES=dir).
TEST(Plot, SamplesForEyes) {
  const char* dir = std::getenv("SLLM_PLOT_SAMPLES");
  if (!dir) GTEST_SKIP() << "set SLLM_PLOT_SAMPLES=<dir> to write sample plots";
  sllm::plot::write_svg(loss_chart(), std::string(dir) + "/loss.svg");
  sllm::plot::write_svg(ppl_chart(), std::string(dir) + "/ppl.svg");
  Chart many;  // nine series: the legend goes outside; negative values, a gap, a lone point, clipped limits
  many.title = "Nine policies", many.xlabel = "tokens", many.ylabel = "delta log-ppl", many.x_max = 45000;
  for (int i = 0; i < 9; ++i) {
    Series s = line("policy " + std::to_string(i) + (i == 4 ? " (a long name)" : ""), {}, {});
    for (int t = 0; t <= 50000; t += 1000) {
      s.x.push_back(t);
      s.y.push_back(t == 20000 && i == 2 ? std::nan("") : (i - 4) * 0.01 * std::log1p(t / 1000.0) - 0.003 * i);
    }
    s.dashed = i >= 7;
    many.series.push_back(s);
  }
  many.series.push_back(line("", {10000}, {0.2}));
  sllm::plot::write_svg(many, std::string(dir) + "/many.svg");
  Chart empty;
  empty.title = "nothing";
  sllm::plot::write_svg(empty, std::string(dir) + "/empty.svg");
}
