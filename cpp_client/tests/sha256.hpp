// SHA-256 (FIPS 180-4), for checking the test vectors' byte parts against their JSON digests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace testsha {
std::string sha256_hex(const std::uint8_t* data, std::size_t size);
}
