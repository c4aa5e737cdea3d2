// Everything of the mfruntime C++ client.
#pragma once

#include "mfruntime/client.hpp"
#include "mfruntime/errors.hpp"
#include "mfruntime/player.hpp"
#include "mfruntime/protocol.hpp"
#include "mfruntime/resampler.hpp"
#include "mfruntime/rig.hpp"
#include "mfruntime/transport.hpp"
#include "mfruntime/value.hpp"
#include "mfruntime/zmq_transport.hpp"
