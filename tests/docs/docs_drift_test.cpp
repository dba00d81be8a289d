// The docs drift test: every name the code emits is documented, and every documented name
// exists. The names come from the code itself:
//   - /debug/alloc/stats keys: every object key, at any depth, of stats_to_json() over
//     real snapshots (alloc/stats_json.hpp, the emitter the daemon serves);
//   - config keys: config_keys() (server/config.hpp);
//   - metric names: metric_names() (server/metrics.hpp), and every `# TYPE` render_metrics()
//     writes must be among them.
// The docs side follows the convention written in docs/index.md ("How the docs are
// checked"): Markdown tables whose first header cell is `key` (docs/configuration.md),
// `metric` (any file in docs/) or `field` (docs/metrics.md, section `/debug/alloc/stats`)
// list names as backticked spans in their first column, several per cell allowed.
// The example configuration deploy/sydradb.toml must list every key once, with the default
// the docs give, and load without a warning.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "alloc/small_pool_allocator.hpp"
#include "alloc/stats_json.hpp"
#include "server/config.hpp"
#include "server/metrics.hpp"

namespace {

namespace fs = std::filesystem;
using Names = std::set<std::string>;

const fs::path kSource = SYDRA_SOURCE_DIR;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

// The cells of a table row; a `|` inside a backticked span or escaped as \| is text.
std::vector<std::string> cells_of(const std::string& row) {
  std::vector<std::string> cells;
  std::string cell;
  bool code = false;
  for (std::size_t i = 0; i < row.size(); ++i) {
    const char c = row[i];
    if (c == '\\' && i + 1 < row.size() && row[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (c == '`') {
      code = !code;
      cell += c;
    } else if (c == '|' && !code) {
      cells.push_back(trim(cell));
      cell.clear();
    } else {
      cell += c;
    }
  }
  cells.push_back(trim(cell));
  // "| a | b |" splits into "", "a", "b", "": drop the outer empties.
  if (!cells.empty() && cells.front().empty()) cells.erase(cells.begin());
  if (!cells.empty() && cells.back().empty()) cells.pop_back();
  return cells;
}

struct Row {
  int line;  // 1-based, in the file
  std::vector<std::string> cells;
};

struct Table {
  std::string file;     // relative to the source tree, for messages
  std::string section;  // the last `## ` heading above the table
  std::vector<std::string> header;
  std::vector<Row> rows;
};

// Every Markdown table of a file, outside fenced code blocks.
std::vector<Table> tables_of(const fs::path& path) {
  std::vector<Table> tables;
  const auto lines = lines_of(read_text(path));
  std::string section;
  bool fenced = false;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string line = trim(lines[i]);
    if (line.rfind("```", 0) == 0) fenced = !fenced;
    if (fenced) continue;
    if (line.rfind("## ", 0) == 0) section = line.substr(3);
    const bool is_table = line.rfind('|', 0) == 0 && i + 1 < lines.size() &&
                          std::regex_match(trim(lines[i + 1]), std::regex(R"(\|(\s*:?-+:?\s*\|)+)"));
    if (!is_table) continue;
    Table t{fs::relative(path, kSource).string(), section, cells_of(line), {}};
    for (i += 2; i < lines.size() && trim(lines[i]).rfind('|', 0) == 0; ++i)
      t.rows.push_back({static_cast<int>(i + 1), cells_of(trim(lines[i]))});
    --i;
    tables.push_back(std::move(t));
  }
  return tables;
}

// The backticked names of a cell: "`size`, `alloc_size`" -> {size, alloc_size}.
std::vector<std::string> names_in(const std::string& cell) {
  std::vector<std::string> names;
  static const std::regex span("`([^`]+)`");
  for (auto it = std::sregex_iterator(cell.begin(), cell.end(), span); it != std::sregex_iterator(); ++it)
    names.push_back((*it)[1].str());
  return names;
}

// Documented names, with where each is documented.
struct Documented {
  std::map<std::string, std::string> where;  // name -> "file:line"
  int tables = 0;
  Names names() const {
    Names n;
    for (const auto& [name, at] : where) n.insert(name);
    return n;
  }
};

template <class Pick>
Documented documented(const std::vector<fs::path>& files, const std::string& first_header, Pick pick) {
  Documented d;
  for (const fs::path& file : files)
    for (const Table& t : tables_of(file)) {
      if (t.header.empty() || t.header[0] != first_header || !pick(t)) continue;
      ++d.tables;
      for (const Row& r : t.rows) {
        if (r.cells.empty()) continue;
        for (const std::string& name : names_in(r.cells[0]))
          d.where.emplace(name, t.file + ":" + std::to_string(r.line));
      }
    }
  return d;
}

std::vector<fs::path> docs_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kSource / "docs"))
    if (entry.path().extension() == ".md") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string join(const Names& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

Names minus(const Names& a, const Names& b) {
  Names out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

std::string undocumented_at(const Documented& d, const Names& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n + " (" + d.where.at(n) + ")";
  return out;
}

void collect_keys(const nlohmann::json& j, Names& keys) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      keys.insert(key);
      collect_keys(value, keys);
    }
  } else if (j.is_array()) {
    for (const auto& element : j) collect_keys(element, keys);
  }
}

// A snapshot of an allocator that has done everything the stats count: shard and legacy
// allocations, fallback sizes, cross-shard frees, deferred blocks, epochs.
sydra::alloc::AllocatorStats busy_snapshot() {
  sydra::alloc::SmallPoolAllocator pool({.shards = 2, .reserve_bytes = std::size_t{64} << 20});
  std::vector<void*> blocks;
  std::thread producer([&] {
    pool.bind_current_thread(0);
    for (std::size_t size = 16; size <= 256; size += 16) blocks.push_back(pool.allocate(size));
    blocks.push_back(pool.allocate(4000));
  });
  producer.join();
  pool.bind_current_thread(1);
  for (void* p : blocks) pool.deallocate(p);  // cross-shard frees
  {
    sydra::alloc::SmallPoolAllocator::EpochGuard read(pool);
    pool.retire(pool.allocate(64));
  }
  pool.advance_epoch();
  pool.collect_garbage();
  return pool.snapshot();
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("stats JSON keys are all documented in docs/metrics.md and no others") {
    Names emitted;
    collect_keys(nlohmann::json::parse(sydra::alloc::stats_to_json(busy_snapshot())), emitted);
    collect_keys(
        nlohmann::json::parse(sydra::alloc::stats_to_json(sydra::alloc::default_allocator().snapshot())),
        emitted);
    REQUIRE(emitted.count("shard_alloc_hits") == 1);    // the walk reached small_pool
    REQUIRE(emitted.count("lock_wait_ns_total") == 1);  // ... and the class arrays

    const Documented docs = documented({kSource / "docs/metrics.md"}, "field", [](const Table& t) {
      return t.section.find("/debug/alloc/stats") != std::string::npos;
    });
    REQUIRE_MESSAGE(docs.tables > 0,
                    "docs/metrics.md has no `field` table under a /debug/alloc/stats heading");
    const Names missing = minus(emitted, docs.names());
    const Names stale = minus(docs.names(), emitted);
    CHECK_MESSAGE(missing.empty(), "emitted but not documented in docs/metrics.md: " << join(missing));
    CHECK_MESSAGE(stale.empty(), "documented but never emitted: " << undocumented_at(docs, stale));
  }

  TEST_CASE("config keys are all documented in docs/configuration.md and no others") {
    const auto& keys = sydra::server::config_keys();
    const Names code(keys.begin(), keys.end());
    REQUIRE(code.count("data_dir") == 1);
    const Documented docs =
        documented({kSource / "docs/configuration.md"}, "key", [](const Table&) { return true; });
    REQUIRE_MESSAGE(docs.tables > 0, "docs/configuration.md has no `key` table");
    const Names missing = minus(code, docs.names());
    const Names stale = minus(docs.names(), code);
    CHECK_MESSAGE(missing.empty(), "config keys not documented in docs/configuration.md: " << join(missing));
    CHECK_MESSAGE(stale.empty(),
                  "documented config keys that do not exist: " << undocumented_at(docs, stale));
  }

  TEST_CASE("render_metrics writes only names that metric_names lists") {
    sydra::server::RequestMetrics requests;
    requests.add_slot("data").record("/status", 200, 0.001);
    sydra::server::http::ConnectionCounters counters;
    const sydra::alloc::AllocatorStats stats = busy_snapshot();
    const std::string text = sydra::server::render_metrics({.alloc = stats,
                                                            .requests = requests,
                                                            .listeners = {{"data", &counters}},
                                                            .uptime_seconds = 1,
                                                            .workers = 2});
    Names rendered;
    static const std::regex type_line(R"(# TYPE (\S+) \S+)");
    for (const std::string& line : lines_of(text)) {
      std::smatch m;
      if (std::regex_match(line, m, type_line)) rendered.insert(m[1].str());
    }
    REQUIRE(rendered.count("sydradb_build_info") == 1);
    const auto names = sydra::server::metric_names();
    const Names listed(names.begin(), names.end());
    CHECK_MESSAGE(names.size() == listed.size(), "metric_names() lists a name twice");
    const Names unlisted = minus(rendered, listed);
    CHECK_MESSAGE(unlisted.empty(),
                  "render_metrics() writes metrics missing from metric_names(): " << join(unlisted));
  }

  TEST_CASE("metric names are all documented in docs/ and no others") {
    const auto names = sydra::server::metric_names();
    const Names code(names.begin(), names.end());
    const Documented docs = documented(docs_files(), "metric", [](const Table&) { return true; });
    REQUIRE_MESSAGE(docs.tables > 0, "no `metric` table in docs/");
    const Names missing = minus(code, docs.names());
    const Names stale = minus(docs.names(), code);
    CHECK_MESSAGE(missing.empty(), "metrics not documented in a `metric` table in docs/: " << join(missing));
    CHECK_MESSAGE(stale.empty(),
                  "documented metrics that metric_names() does not list: " << undocumented_at(docs, stale));
  }

  TEST_CASE("deploy/sydradb.toml lists every config key once with its documented default") {
    const fs::path example = kSource / "deploy/sydradb.toml";
    // A setting line is `key = value`, active or commented out as `# key = value`.
    static const std::regex setting(R"(^(#\s*)?([a-z_][a-z0-9_]*)\s*=\s*(.*?)\s*$)");
    std::map<std::string, int> seen;
    std::map<std::string, std::string> commented_value;
    std::string uncommented;  // the file with every setting line active
    for (const std::string& line : lines_of(read_text(example))) {
      std::smatch m;
      if (std::regex_match(line, m, setting)) {
        ++seen[m[2].str()];
        if (m[1].matched) commented_value[m[2].str()] = m[3].str();
        uncommented += m[2].str() + " = " + m[3].str() + "\n";
      }
    }
    const auto& keys = sydra::server::config_keys();
    const Names code(keys.begin(), keys.end());
    Names listed, twice;
    for (const auto& [key, count] : seen) {
      listed.insert(key);
      if (count > 1) twice.insert(key);
    }
    CHECK_MESSAGE(minus(code, listed).empty(),
                  "keys missing from deploy/sydradb.toml: " << join(minus(code, listed)));
    CHECK_MESSAGE(minus(listed, code).empty(),
                  "deploy/sydradb.toml sets unknown keys: " << join(minus(listed, code)));
    CHECK_MESSAGE(twice.empty(), "deploy/sydradb.toml lists keys more than once: " << join(twice));

    // It loads as shipped, and with every line uncommented, without a warning.
    sydra::server::Config shipped;
    CHECK(sydra::server::load_config_file(example.string(), shipped).empty());
    CHECK(shipped.data_dir == "/var/lib/sydradb");
    const fs::path tmp =
        fs::temp_directory_path() / ("sydradb-docs-test-" + std::to_string(::getpid()) + ".toml");
    std::ofstream(tmp) << uncommented;
    sydra::server::Config all;
    std::vector<std::string> warnings;
    CHECK_NOTHROW(warnings = sydra::server::load_config_file(tmp.string(), all));
    fs::remove(tmp);
    CHECK(warnings.empty());

    // The commented values are the code's defaults (every key the code had when this test
    // was written; newer keys are checked against the docs below).
    const sydra::server::Config d;
    CHECK(all.http_port == d.http_port);
    CHECK(all.fsync == d.fsync);
    CHECK(all.flush_interval_ms == d.flush_interval_ms);
    CHECK(all.memtable_max_bytes == d.memtable_max_bytes);
    CHECK(all.retention_days == d.retention_days);
    CHECK(all.auth_token == d.auth_token);
    CHECK(all.listen_address == d.listen_address);
    CHECK(all.workers == d.workers);
    CHECK(all.allocator_mode == d.allocator_mode);
    CHECK(all.allocator_shards == d.allocator_shards);
    CHECK(all.log_level == d.log_level);
    CHECK(all.access_log == d.access_log);
    CHECK(all.port_file == d.port_file);
    CHECK(all.control_address == d.control_address);
    CHECK(all.control_port == d.control_port);
    CHECK(all.control_port_file == d.control_port_file);
    CHECK(all.max_body_bytes == d.max_body_bytes);
    CHECK(all.max_header_bytes == d.max_header_bytes);
    CHECK(all.read_timeout_ms == d.read_timeout_ms);
    CHECK(all.idle_timeout_ms == d.idle_timeout_ms);
    CHECK(all.max_connections == d.max_connections);
    CHECK(all.shutdown_timeout_ms == d.shutdown_timeout_ms);
    CHECK(all.maintenance_interval_ms == d.maintenance_interval_ms);

    // ... and the defaults docs/configuration.md gives ("empty" for "").
    std::map<std::string, std::string> doc_default;
    for (const Table& t : tables_of(kSource / "docs/configuration.md")) {
      const auto col = std::find(t.header.begin(), t.header.end(), "default");
      if (t.header.empty() || t.header[0] != "key" || col == t.header.end()) continue;
      const auto c = static_cast<std::size_t>(col - t.header.begin());
      for (const Row& r : t.rows)
        if (r.cells.size() > c)
          for (const std::string& name : names_in(r.cells[0])) {
            std::string v = r.cells[c];
            v.erase(std::remove(v.begin(), v.end(), '`'), v.end());
            doc_default[name] = v == "empty" ? "" : v;
          }
    }
    for (const auto& [key, value] : commented_value) {
      std::string v = value;
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      const auto it = doc_default.find(key);
      if (it == doc_default.end()) continue;  // undocumented: the test above says so
      CHECK_MESSAGE(v == it->second,
                    "deploy/sydradb.toml: " << key << " = " << value
                                            << ", docs/configuration.md default: " << it->second);
    }
  }
}
