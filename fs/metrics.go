package fs

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Metrics count the mount's FUSE operations, their failures by errno, and
// the bytes read and written through the daemon. Reads the kernel serves
// itself (passthrough, page cache) never reach the daemon and are not
// counted.
type Metrics struct {
	ops      *prometheus.CounterVec
	errors   *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	readB    prometheus.Counter
	writtenB prometheus.Counter
	// byOp holds each operation's series, resolved once: a label lookup
	// per request would cost more than the rest of the bookkeeping.
	byOp map[string]opSeries
}

type opSeries struct {
	count   prometheus.Counter
	seconds prometheus.Observer
}

// meteredOps are the operations meteredFS counts.
var meteredOps = []string{"lookup", "getattr", "setattr", "mknod", "mkdir", "unlink", "rmdir", "rename", "link", "symlink",
	"getxattr", "listxattr", "setxattr", "removexattr", "create", "open", "read", "write", "flush", "fsync",
	"opendir", "readdir", "readdirplus", "statfs"}

// NewMetrics creates the mount's metrics and registers them on reg; a nil
// reg keeps them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_fuse_operations_total",
			Help: "FUSE requests answered, by operation.",
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "glimpse_fuse_errors_total",
			Help: "FUSE requests answered with an error, by operation and errno (ENOENT on lookup and ENODATA on getxattr are routine).",
		}, []string{"op", "errno"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "glimpse_fuse_operation_duration_seconds",
			Help:    "Time the daemon took to answer a FUSE request, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10), // 10 µs to 2.6 s
		}, []string{"op"}),
		readB: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glimpse_fuse_read_bytes_total",
			Help: "Bytes read through the daemon (passthrough and page-cache reads excluded).",
		}),
		writtenB: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "glimpse_fuse_write_bytes_total",
			Help: "Bytes written into the mount.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.ops, m.errors, m.seconds, m.readB, m.writtenB)
	}
	m.byOp = make(map[string]opSeries, len(meteredOps))
	for _, op := range meteredOps {
		m.byOp[op] = opSeries{count: m.ops.WithLabelValues(op), seconds: m.seconds.WithLabelValues(op)}
	}
	return m
}

func (m *Metrics) done(op string, start time.Time, st fuse.Status) {
	series := m.byOp[op]
	series.count.Inc()
	series.seconds.Observe(time.Since(start).Seconds())
	if st != fuse.OK {
		name := unix.ErrnoName(syscall.Errno(st))
		if name == "" {
			name = st.String()
		}
		m.errors.WithLabelValues(op, name).Inc()
	}
}

// meteredFS wraps go-fuse's node bridge: every request the daemon answers
// passes through it, so the metrics need no hook in the node code.
// Requests not listed here (forget, release, locks, ...) pass through
// uncounted.
type meteredFS struct {
	fuse.RawFileSystem
	m *Metrics
}

// observe records request op, started at start, which answered st. Go
// evaluates calls left to right, so observe(op, time.Now(), call()) times
// the call.
func (f *meteredFS) observe(op string, start time.Time, st fuse.Status) fuse.Status {
	f.m.done(op, start, st)
	return st
}

func (f *meteredFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	return f.observe("lookup", time.Now(), f.RawFileSystem.Lookup(c, h, name, out))
}

func (f *meteredFS) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return f.observe("getattr", time.Now(), f.RawFileSystem.GetAttr(c, in, out))
}

func (f *meteredFS) SetAttr(c <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return f.observe("setattr", time.Now(), f.RawFileSystem.SetAttr(c, in, out))
}

func (f *meteredFS) Mknod(c <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.observe("mknod", time.Now(), f.RawFileSystem.Mknod(c, in, name, out))
}

func (f *meteredFS) Mkdir(c <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.observe("mkdir", time.Now(), f.RawFileSystem.Mkdir(c, in, name, out))
}

func (f *meteredFS) Unlink(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return f.observe("unlink", time.Now(), f.RawFileSystem.Unlink(c, h, name))
}

func (f *meteredFS) Rmdir(c <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return f.observe("rmdir", time.Now(), f.RawFileSystem.Rmdir(c, h, name))
}

func (f *meteredFS) Rename(c <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return f.observe("rename", time.Now(), f.RawFileSystem.Rename(c, in, oldName, newName))
}

func (f *meteredFS) Link(c <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	return f.observe("link", time.Now(), f.RawFileSystem.Link(c, in, name, out))
}

func (f *meteredFS) Symlink(c <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return f.observe("symlink", time.Now(), f.RawFileSystem.Symlink(c, h, target, name, out))
}

func (f *meteredFS) GetXAttr(c <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := f.RawFileSystem.GetXAttr(c, h, attr, dest)
	return n, f.observe("getxattr", start, st)
}

func (f *meteredFS) ListXAttr(c <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := f.RawFileSystem.ListXAttr(c, h, dest)
	return n, f.observe("listxattr", start, st)
}

func (f *meteredFS) SetXAttr(c <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return f.observe("setxattr", time.Now(), f.RawFileSystem.SetXAttr(c, in, attr, data))
}

func (f *meteredFS) RemoveXAttr(c <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return f.observe("removexattr", time.Now(), f.RawFileSystem.RemoveXAttr(c, h, attr))
}

func (f *meteredFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return f.observe("create", time.Now(), f.RawFileSystem.Create(c, in, name, out))
}

func (f *meteredFS) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return f.observe("open", time.Now(), f.RawFileSystem.Open(c, in, out))
}

func (f *meteredFS) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	start := time.Now()
	res, st := f.RawFileSystem.Read(c, in, buf)
	if st == fuse.OK && res != nil {
		f.m.readB.Add(float64(res.Size()))
	}
	return res, f.observe("read", start, st)
}

func (f *meteredFS) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := f.RawFileSystem.Write(c, in, data)
	f.m.writtenB.Add(float64(n))
	return n, f.observe("write", start, st)
}

// Writev is how go-fuse delivers writes first; ENOSYS sends it on to Write.
func (f *meteredFS) Writev(c <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	start := time.Now()
	n, st := f.RawFileSystem.Writev(c, in, data)
	if st == fuse.ENOSYS {
		return n, st
	}
	f.m.writtenB.Add(float64(n))
	return n, f.observe("write", start, st)
}

func (f *meteredFS) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return f.observe("flush", time.Now(), f.RawFileSystem.Flush(c, in))
}

func (f *meteredFS) Fsync(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return f.observe("fsync", time.Now(), f.RawFileSystem.Fsync(c, in))
}

func (f *meteredFS) OpenDir(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return f.observe("opendir", time.Now(), f.RawFileSystem.OpenDir(c, in, out))
}

func (f *meteredFS) ReadDir(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.observe("readdir", time.Now(), f.RawFileSystem.ReadDir(c, in, out))
}

func (f *meteredFS) ReadDirPlus(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.observe("readdirplus", time.Now(), f.RawFileSystem.ReadDirPlus(c, in, out))
}

func (f *meteredFS) StatFs(c <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	return f.observe("statfs", time.Now(), f.RawFileSystem.StatFs(c, h, out))
}
