package core

import (
	"os"
	"testing"
)

// At an unmount the kernel aborts the RELEASE requests still queued (fuse_abort_conn), so a
// file removed while open, closed just before the unmount, can reach Close still open here
// and unlinked. Close does what the lost release would have done: the presence record it
// writes must not say "unsynced" for it (gc refused after clean unmounts, docs/testing.md).
func TestCloseDropsUnlinkedOpenFiles(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	f := e.open()
	writeFile(t, f, "/read-then-removed", []byte("content"))
	writeFile(t, f, "/kept", []byte("kept"))
	ok(t, f.Sync(ctx()))
	h := must(f.OpenFile(must(f.Resolve("/read-then-removed")), os.O_RDONLY))
	readAllHandle(t, h)
	ok(t, f.Remove(RootIno, "read-then-removed", false))
	ok(t, f.Sync(ctx()))
	ok(t, f.Close()) // h's release never came
	all := must(Devices(ctx(), e.store, e.keys))
	if len(all) != 1 || all[0].Unsynced {
		t.Fatalf("presence after a clean close: %+v, want one record, not unsynced", all)
	}
	g := e.open()
	if why := g.LocalWork(); why != "" {
		t.Fatalf("the cache holds work after a clean close: %s", why)
	}
	if _, err := g.Resolve("/read-then-removed"); err == nil {
		t.Fatal("the removed file is back")
	}
	if got := string(readFile(t, g, "/kept")); got != "kept" {
		t.Fatalf("/kept reads %q", got)
	}
}
