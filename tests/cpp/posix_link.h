// A POSIX board adapter for dk::Device: a file descriptor (pipe or pty master) stands in
// for the UART, and a FIFO of `window` bytes stands in for the serial driver's receive
// buffer. Bytes that arrive while an inference runs beyond what the FIFO holds are lost,
// as on a board, so a host that ignores the advertised rx_window sees real overflows.
// Header-only: the fake device (posix_device.cpp) and manual host builds of a rendered
// runner include it.
#ifndef DK_TESTS_POSIX_LINK_H_
#define DK_TESTS_POSIX_LINK_H_

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "dk_protocol.h"

namespace dkhost {

class PosixLink {
 public:
  PosixLink(int in_fd, int out_fd, size_t window)
      : in_fd_(in_fd), out_fd_(out_fd), fifo_(window ? window : 1), head_(0), size_(0),
        eof_(false), dropped_(0), device_(nullptr) {
    fcntl(in_fd_, F_SETFL, fcntl(in_fd_, F_GETFL) | O_NONBLOCK);
  }

  dk::Io io() {
    dk::Io io = {ReadByteCb, WriteCb, this, RebootCb};
    return io;
  }
  void Attach(dk::Device* device, const std::string& banner) {
    device_ = device;
    banner_ = banner;
  }

  // Boot: print the banner as raw text (as boards do), then start the protocol.
  void Boot() {
    size_ = head_ = 0;  // a reboot loses what the serial driver had buffered
    Write(reinterpret_cast<const uint8_t*>(banner_.data()), banner_.size());
    if (device_) device_->Begin();
  }

  int ReadByte() {
    if (size_ == 0) Pull(false);
    if (size_ == 0) return -1;
    uint8_t b = fifo_[head_];
    head_ = (head_ + 1) % fifo_.size();
    --size_;
    return b;
  }

  // Call right after an inference: what arrived meanwhile goes into the FIFO or is lost.
  void AfterInference() { Pull(true); }

  void Write(const uint8_t* data, size_t len) {
    while (len > 0) {
      ssize_t n = write(out_fd_, data, len);
      if (n > 0) {
        data += n;
        len -= static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        struct pollfd p = {out_fd_, POLLOUT, 0};
        poll(&p, 1, 100);
      } else {
        return;  // the host went away; the main loop ends at EOF
      }
    }
  }

  // Block until input is readable (or timeout); false at end of input.
  bool Wait(int timeout_ms) {
    if (size_ > 0) return true;
    if (eof_) return false;
    struct pollfd p = {in_fd_, POLLIN, 0};
    poll(&p, 1, timeout_ms);
    return true;
  }

  bool eof() const { return eof_ && size_ == 0; }
  uint32_t dropped() const { return dropped_; }

 private:
  static int ReadByteCb(void* ctx) { return static_cast<PosixLink*>(ctx)->ReadByte(); }
  static void WriteCb(void* ctx, const uint8_t* d, size_t n) { static_cast<PosixLink*>(ctx)->Write(d, n); }
  static void RebootCb(void* ctx) { static_cast<PosixLink*>(ctx)->Boot(); }

  // Read what the fd has; keep what fits the FIFO. Outside an inference the device reads
  // as fast as bytes come, so only take what fits; after one, the rest was lost.
  void Pull(bool drop_excess) {
    uint8_t tmp[4096];
    while (true) {
      size_t room = fifo_.size() - size_;
      size_t want = drop_excess ? sizeof(tmp) : (room < sizeof(tmp) ? room : sizeof(tmp));
      if (want == 0) return;
      ssize_t n = read(in_fd_, tmp, want);
      if (n == 0) eof_ = true;
      if (n <= 0) return;
      for (ssize_t i = 0; i < n; ++i) {
        if (size_ == fifo_.size()) {
          ++dropped_;
          continue;
        }
        fifo_[(head_ + size_) % fifo_.size()] = tmp[i];
        ++size_;
      }
    }
  }

  int in_fd_;
  int out_fd_;
  std::vector<uint8_t> fifo_;
  size_t head_;
  size_t size_;
  bool eof_;
  uint32_t dropped_;
  dk::Device* device_;
  std::string banner_;
};

// Open a pty pair in raw mode; returns the master fd, the slave path and (kept open so the
// master never reads EIO while no host has the port open) the slave fd.
inline int OpenRawPty(std::string* slave_path, int* slave_fd) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return -1;
  *slave_path = ptsname(master);
  *slave_fd = open(slave_path->c_str(), O_RDWR | O_NOCTTY);
  if (*slave_fd < 0) return -1;
  struct termios tio;
  tcgetattr(*slave_fd, &tio);
  cfmakeraw(&tio);
  tcsetattr(*slave_fd, TCSANOW, &tio);
  return master;
}

inline void SleepMicros(uint32_t us) {
  struct timespec ts = {static_cast<time_t>(us / 1000000u), static_cast<long>(us % 1000000u) * 1000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// "9:1x1:0.0586:-128" -> dtype code, dims, scale, zero point.
inline bool ParseSpec(const std::string& text, dk::TensorSpec* spec) {
  memset(spec, 0, sizeof(*spec));
  char dims[64];
  unsigned dtype;
  float scale;
  long zp;
  if (sscanf(text.c_str(), "%u:%63[0-9x]:%f:%ld", &dtype, dims, &scale, &zp) != 4) return false;
  spec->dtype = static_cast<uint8_t>(dtype);
  spec->scale = scale;
  spec->zero_point = static_cast<int32_t>(zp);
  for (char* tok = strtok(dims, "x"); tok && spec->ndims < 6; tok = strtok(nullptr, "x")) {
    spec->dims[spec->ndims++] = static_cast<uint16_t>(atoi(tok));
  }
  return spec->ndims > 0;
}

}  // namespace dkhost

#endif  // DK_TESTS_POSIX_LINK_H_
