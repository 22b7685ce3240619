package main

import (
	"log/slog"
	"regexp"
	"sync"
	"time"
)

// errorHandler is the OpenTelemetry error handler the command installs
// (otel.SetErrorHandler): it logs through the command's logger, each
// distinct error at most once every interval with a count of the repeats
// left out, so that an unreachable collector costs a few log lines, not one
// per export.
type errorHandler struct {
	logger *slog.Logger
	every  time.Duration
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]*seenError
}

type seenError struct {
	logged     time.Time
	suppressed int
}

// digits vary between repeats of one error (ports, delays, counts).
var digits = regexp.MustCompile(`[0-9]+`)

// maxDistinctErrors bounds the lines per interval when errors keep
// changing text.
const maxDistinctErrors = 3

func newErrorHandler(logger *slog.Logger, every time.Duration, now func() time.Time) *errorHandler {
	return &errorHandler{logger: logger, every: every, now: now, seen: map[string]*seenError{}}
}

// Handle implements otel.ErrorHandler.
func (h *errorHandler) Handle(err error) {
	if err == nil {
		return
	}
	key := digits.ReplaceAllString(err.Error(), "N")
	h.mu.Lock()
	now := h.now()
	recent := 0
	for k, s := range h.seen {
		switch age := now.Sub(s.logged); {
		case age < h.every:
			recent++
		case age >= 2*h.every || s.suppressed == 0:
			// Gone quiet: its next occurrence is news again.
			delete(h.seen, k)
		}
	}
	s, ok := h.seen[key]
	if (ok && now.Sub(s.logged) < h.every) || (!ok && recent >= maxDistinctErrors) {
		if ok {
			s.suppressed++
		}
		h.mu.Unlock()
		return
	}
	suppressed := 0
	if ok {
		suppressed = s.suppressed
	}
	h.seen[key] = &seenError{logged: now}
	h.mu.Unlock()
	h.logger.Warn("tracing error (repeats are logged at most every "+h.every.String()+")", "err", err, "repeats_since_last_logged", suppressed)
}
