// Input for the g++ program test: a non-trivial C++17 translation unit that
// the compiler (cc1plus) builds with hakmem preloaded. Heavy on templates,
// <regex>, <map>, <string>, <vector>, constexpr and lambdas, so the compiler
// allocates a lot; the compiled program prints deterministic results.
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace prog {

// ---- constexpr -------------------------------------------------------------
constexpr std::uint64_t fib(unsigned n) {
  std::uint64_t a = 0, b = 1;
  for (unsigned i = 0; i < n; ++i) {
    std::uint64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}

constexpr bool is_prime(std::uint64_t n) {
  if (n < 2) return false;
  for (std::uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

template <std::size_t N>
constexpr std::array<std::uint32_t, N> primes_table() {
  std::array<std::uint32_t, N> out{};
  std::size_t k = 0;
  for (std::uint32_t n = 2; k < N; ++n)
    if (is_prime(n)) out[k++] = n;
  return out;
}

constexpr auto kPrimes = primes_table<64>();
static_assert(kPrimes[0] == 2 && kPrimes[63] == 311, "prime table");
static_assert(fib(50) == 12586269025ULL, "fib");

constexpr std::uint32_t fnv1a(const char* s, std::uint32_t h = 2166136261u) {
  return *s ? fnv1a(s + 1, (h ^ static_cast<unsigned char>(*s)) * 16777619u) : h;
}
static_assert(fnv1a("hakmem") != 0, "hash");

// ---- templates ---------------------------------------------------------------
template <typename... Ts>
struct TypeList {};

template <typename List>
struct Length;
template <typename... Ts>
struct Length<TypeList<Ts...>> : std::integral_constant<std::size_t, sizeof...(Ts)> {};

template <typename T, typename List>
struct Prepend;
template <typename T, typename... Ts>
struct Prepend<T, TypeList<Ts...>> {
  using type = TypeList<T, Ts...>;
};

template <template <typename> class Pred, typename List>
struct Filter;
template <template <typename> class Pred>
struct Filter<Pred, TypeList<>> {
  using type = TypeList<>;
};
template <template <typename> class Pred, typename T, typename... Ts>
struct Filter<Pred, TypeList<T, Ts...>> {
  using rest = typename Filter<Pred, TypeList<Ts...>>::type;
  using type = std::conditional_t<Pred<T>::value, typename Prepend<T, rest>::type, rest>;
};

using Everything = TypeList<int, double, char, long, float, short, unsigned, bool, long double>;
using Integrals = Filter<std::is_integral, Everything>::type;
static_assert(Length<Integrals>::value == 6, "filter");

template <typename T>
struct Matrix {
  std::size_t rows, cols;
  std::vector<T> data;
  Matrix(std::size_t r, std::size_t c) : rows(r), cols(c), data(r * c) {}
  T& operator()(std::size_t r, std::size_t c) { return data[r * cols + c]; }
  const T& operator()(std::size_t r, std::size_t c) const { return data[r * cols + c]; }
  Matrix operator*(const Matrix& o) const {
    Matrix out(rows, o.cols);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t k = 0; k < cols; ++k)
        for (std::size_t j = 0; j < o.cols; ++j) out(i, j) += (*this)(i, k) * o(k, j);
    return out;
  }
  T trace() const {
    T t{};
    for (std::size_t i = 0; i < std::min(rows, cols); ++i) t += (*this)(i, i);
    return t;
  }
};

template <typename T, typename F>
auto map_vec(const std::vector<T>& v, F f) {
  std::vector<decltype(f(v[0]))> out;
  out.reserve(v.size());
  for (const auto& x : v) out.push_back(f(x));
  return out;
}

template <typename T, typename F, typename Acc>
Acc fold(const std::vector<T>& v, Acc init, F f) {
  for (const auto& x : v) init = f(init, x);
  return init;
}

template <typename K, typename V, typename Cmp = std::less<K>>
class LruCache {
 public:
  explicit LruCache(std::size_t cap) : cap_(cap) {}
  std::optional<V> get(const K& k) {
    auto it = index_.find(k);
    if (it == index_.end()) return std::nullopt;
    touch(k);
    return it->second;
  }
  void put(const K& k, V v) {
    index_[k] = std::move(v);
    touch(k);
    while (order_.size() > cap_) {
      index_.erase(order_.front());
      order_.erase(order_.begin());
    }
  }
  std::size_t size() const { return index_.size(); }

 private:
  void touch(const K& k) {
    auto it = std::find(order_.begin(), order_.end(), k);
    if (it != order_.end()) order_.erase(it);
    order_.push_back(k);
  }
  std::size_t cap_;
  std::map<K, V, Cmp> index_;
  std::vector<K> order_;
};

// ---- a tiny expression language: variant AST + recursive descent ---------
struct Expr;
using ExprPtr = std::shared_ptr<Expr>;
struct Num { long value; };
struct Var { std::string name; };
struct Bin { char op; ExprPtr lhs, rhs; };
struct Expr { std::variant<Num, Var, Bin> node; };

template <class... Fs>
struct Overloaded : Fs... { using Fs::operator()...; };
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

class Parser {
 public:
  explicit Parser(std::string s) : s_(std::move(s)) {}
  ExprPtr parse() { return sum(); }

 private:
  void ws() { while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_; }
  ExprPtr atom() {
    ws();
    if (s_[pos_] == '(') {
      ++pos_;
      auto e = sum();
      ws();
      ++pos_;  // ')'
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
      long v = 0;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_])))
        v = v * 10 + (s_[pos_++] - '0');
      return std::make_shared<Expr>(Expr{Num{v}});
    }
    std::string name;
    while (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_]))) name += s_[pos_++];
    return std::make_shared<Expr>(Expr{Var{name}});
  }
  ExprPtr product() {
    auto e = atom();
    for (ws(); pos_ < s_.size() && (s_[pos_] == '*' || s_[pos_] == '%'); ws()) {
      char op = s_[pos_++];
      e = std::make_shared<Expr>(Expr{Bin{op, e, atom()}});
    }
    return e;
  }
  ExprPtr sum() {
    auto e = product();
    for (ws(); pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-'); ws()) {
      char op = s_[pos_++];
      e = std::make_shared<Expr>(Expr{Bin{op, e, product()}});
    }
    return e;
  }
  std::string s_;
  std::size_t pos_ = 0;
};

long eval(const ExprPtr& e, const std::map<std::string, long>& env) {
  return std::visit(
      Overloaded{
          [](const Num& n) { return n.value; },
          [&](const Var& v) {
            auto it = env.find(v.name);
            return it == env.end() ? 0L : it->second;
          },
          [&](const Bin& b) {
            long l = eval(b.lhs, env), r = eval(b.rhs, env);
            switch (b.op) {
              case '+': return l + r;
              case '-': return l - r;
              case '*': return l * r;
              default: return r ? l % r : 0L;
            }
          }},
      e->node);
}

// ---- text processing with <regex> --------------------------------------------
std::string make_log(unsigned lines) {
  static const char* verbs[] = {"GET", "POST", "PUT", "DELETE"};
  static const char* paths[] = {"/index.html", "/api/v1/users", "/api/v1/items/42", "/static/app.js",
                                "/login"};
  std::ostringstream os;
  std::uint32_t x = 2463534242u;
  for (unsigned i = 0; i < lines; ++i) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    os << "10.0." << (x % 7) << '.' << (x % 251) << " - - [29/Nov/2024:12:" << std::setw(2)
       << std::setfill('0') << (i % 60) << ":00] \"" << verbs[x % 4] << ' ' << paths[(x >> 8) % 5]
       << " HTTP/1.1\" " << (x % 10 == 0 ? 500 : x % 5 == 0 ? 404 : 200) << ' ' << (x % 5000) << '\n';
  }
  return os.str();
}

struct LogStats {
  std::map<std::string, unsigned> by_verb;
  std::map<int, unsigned> by_status;
  std::unordered_map<std::string, std::uint64_t> bytes_by_path;
  unsigned matched = 0;
};

LogStats analyse(const std::string& log) {
  static const std::regex line_re(
      R"((\d+\.\d+\.\d+\.\d+) - - \[([^\]]+)\] "([A-Z]+) (\S+) HTTP/1\.1" (\d{3}) (\d+))");
  LogStats st;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, line_re)) continue;
    ++st.matched;
    ++st.by_verb[m[3]];
    ++st.by_status[std::stoi(m[5])];
    st.bytes_by_path[m[4]] += std::stoull(m[6]);
  }
  return st;
}

std::string redact(const std::string& text) {
  static const std::regex ip_re(R"(\b(\d+)\.(\d+)\.\d+\.\d+\b)");
  return std::regex_replace(text, ip_re, "$1.$2.x.x");
}

}  // namespace prog

int main() {
  using namespace prog;
  std::uint64_t check = 0;
  auto mix = [&check](std::uint64_t v) { check = (check ^ v) * 1099511628211ULL; };

  // constexpr results
  std::cout << "fib(90) = " << fib(90) << "\n";
  std::cout << "primes: " << kPrimes[10] << ' ' << kPrimes[63] << "\n";
  mix(fib(90));

  // templates: matrices
  Matrix<long> a(24, 24), b(24, 24);
  for (std::size_t i = 0; i < 24; ++i)
    for (std::size_t j = 0; j < 24; ++j) {
      a(i, j) = static_cast<long>((i * 31 + j * 17) % 13) - 6;
      b(i, j) = static_cast<long>((i * 7 + j * j * 3 + i * j) % 11) - 5;
    }
  auto c = a * b * a;
  std::cout << "trace = " << c.trace() << "\n";
  mix(static_cast<std::uint64_t>(c.trace()));

  // lambdas, map_vec, fold, sort with comparator
  std::vector<int> nums(5000);
  std::iota(nums.begin(), nums.end(), 1);
  auto squares = map_vec(nums, [](int x) { return static_cast<long long>(x) * x; });
  auto strs = map_vec(nums, [](int x) { return std::to_string(x * 7 % 1000); });
  std::sort(strs.begin(), strs.end(), [](const std::string& l, const std::string& r) {
    return l.size() != r.size() ? l.size() > r.size() : l < r;
  });
  auto total = fold(squares, 0LL, [](long long acc, long long v) { return acc + v % 1009; });
  std::cout << "fold = " << total << ", first = " << strs.front() << ", last = " << strs.back() << "\n";
  mix(static_cast<std::uint64_t>(total));

  // LRU cache over strings
  LruCache<std::string, std::vector<int>> cache(100);
  unsigned hits = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string key = "key" + std::to_string((i % 7 == 0) ? (i * 37) % 400 : (i * 13) % 90);
    if (auto v = cache.get(key)) {
      ++hits;
      mix(v->size());
    } else {
      cache.put(key, std::vector<int>(i % 50, i));
    }
  }
  std::cout << "lru hits = " << hits << ", size = " << cache.size() << "\n";

  // expression language
  std::map<std::string, long> env{{"x", 7}, {"y", 11}, {"z", -3}};
  const char* exprs[] = {"1 + 2 * 3", "(x + y) * z - 4", "x * x * x % 100 + y",
                         "((1+2)*(3+4)*(5+6)) % 97 - z * z"};
  for (const char* src : exprs) {
    long v = eval(Parser(src).parse(), env);
    std::cout << src << " = " << v << "\n";
    mix(static_cast<std::uint64_t>(v));
  }

  // regex over a generated log
  std::string log = make_log(4000);
  LogStats st = analyse(log);
  std::cout << "matched " << st.matched << " lines\n";
  for (const auto& [verb, n] : st.by_verb) std::cout << "  " << verb << ' ' << n << "\n";
  for (const auto& [status, n] : st.by_status) std::cout << "  " << status << ' ' << n << "\n";
  std::set<std::string> paths;
  for (const auto& kv : st.bytes_by_path) paths.insert(kv.first + "=" + std::to_string(kv.second));
  for (const auto& p : paths) std::cout << "  " << p << "\n";
  std::string red = redact(log.substr(0, 2000));
  std::cout << "redacted " << red.substr(0, red.find('\n')) << "\n";
  mix(std::hash<std::string>{}(red) & 0xffffffff);
  mix(st.matched);

  std::cout << "checksum " << std::hex << check << std::dec << "\n";
  return 0;
}
