// CURVE key files as written by `mf keys` (ZeroMQ certificates).
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "mfruntime/transport.hpp"

namespace mfruntime {

namespace {
// The quoted value of `name = "..."` in a certificate file ("" when absent).
std::string cert_value(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t at = line.find(name);
    if (at == std::string::npos) continue;
    std::size_t eq = line.find('=', at + name.size());
    if (eq == std::string::npos) continue;
    std::size_t open = line.find('"', eq);
    std::size_t close = open == std::string::npos ? open : line.find('"', open + 1);
    if (close == std::string::npos) continue;
    return line.substr(open + 1, close - open - 1);
  }
  return "";
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("key file " + path + " not found (make one with: mf keys --out KEYDIR --name NAME)");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}
}  // namespace

CurveKeys load_curve_keys(const std::string& server_public_file, const std::string& client_secret_file) {
  CurveKeys k;
  k.server_public = cert_value(read_file(server_public_file), "public-key");
  if (k.server_public.size() != 40)
    throw std::runtime_error(server_public_file + " has no valid public key; give the server's NAME.key made by mf keys");
  std::string mine = read_file(client_secret_file);
  k.client_public = cert_value(mine, "public-key");
  k.client_secret = cert_value(mine, "secret-key");
  if (k.client_public.size() != 40)
    throw std::runtime_error(client_secret_file + " has no valid public key; give this client's NAME.key_secret made by mf keys");
  if (k.client_secret.size() != 40)
    throw std::runtime_error(client_secret_file + " holds no secret key; give the NAME.key_secret file, not NAME.key");
  return k;
}

}  // namespace mfruntime
