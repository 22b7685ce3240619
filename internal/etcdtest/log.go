package etcdtest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogCore forwards zap entries at error level and above to a slog.Logger.
type slogCore struct {
	l      *slog.Logger
	mute   *atomic.Bool
	member string
	fields []zapcore.Field
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return l >= zapcore.ErrorLevel && !c.mute.Load()
}

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	return &slogCore{l: c.l, mute: c.mute, member: c.member, fields: append(slices.Clip(c.fields), fs...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	attrs = append(attrs, slog.String("member", c.member))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	c.l.LogAttrs(context.Background(), slog.LevelError, "etcd: "+e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

// newEtcdLogger returns a zap logger for an embedded member that writes
// error-level entries to w (JSON lines) and, if l is not nil and mute is
// false, to l.
func newEtcdLogger(w *os.File, l *slog.Logger, member string, mute *atomic.Bool) *zap.Logger {
	cores := []zapcore.Core{zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(w),
		zapcore.ErrorLevel,
	)}
	if l != nil {
		cores = append(cores, &slogCore{l: l, mute: mute, member: member})
	}
	return zap.New(zapcore.NewTee(cores...))
}

// tail returns up to the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
