package rootsync

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/imgfs/imgfs/dedup/keyring"
)

// Presence records: written, listed (records of another key or garbage skipped), rewritten
// in place, forgotten by device name; OtherUnsynced and KeepFrom read them.
func TestPresenceRecords(t *testing.T) {
	store := newStore(t)
	key := keyring.Secret(bytes.Repeat([]byte{7}, 32))
	ps := Presences{Store: store, Key: key}
	lap := Presence{ID: bytes.Repeat([]byte{1}, 16), Device: "laptop", Pid: 10, Time: 100, Anchor: 5, Unsynced: true}
	desk := Presence{ID: bytes.Repeat([]byte{2}, 16), Device: "desktop", Pid: 20, Time: 200, Anchor: 9}
	okT(t, ps.Write(ctxT(t), lap))
	okT(t, ps.Write(ctxT(t), desk))
	other := Presences{Store: store, Key: keyring.Secret(bytes.Repeat([]byte{8}, 32))}
	okT(t, other.Write(ctxT(t), Presence{ID: bytes.Repeat([]byte{3}, 16), Device: "stranger"}))
	okT(t, store.Put(ctxT(t), PresencePrefix+"junk", strings.NewReader("junk"), 4))
	lap.Anchor = 7 // rewritten in place
	okT(t, ps.Write(ctxT(t), lap))
	all, err := ps.List(ctxT(t))
	okT(t, err)
	if len(all) != 2 {
		t.Fatalf("listed %d records, want 2: %+v", len(all), all)
	}
	byDev := map[string]Presence{}
	for _, p := range all {
		byDev[p.Device] = p
	}
	if !reflect.DeepEqual(byDev["laptop"], lap) || !reflect.DeepEqual(byDev["desktop"], desk) {
		t.Fatalf("records %+v", all)
	}
	if u := OtherUnsynced(all, desk.ID); len(u) != 1 || u[0].Device != "laptop" {
		t.Fatalf("OtherUnsynced from the desktop: %+v", u)
	}
	if u := OtherUnsynced(all, lap.ID); len(u) != 0 {
		t.Fatalf("OtherUnsynced from the laptop itself: %+v", u)
	}
	// gc on the desktop (anchor 9, newest 12) keeps from the laptop's anchor 7.
	if got := KeepFrom(all, desk.ID, 9, 12, 1); got != 7 {
		t.Fatalf("KeepFrom = %d, want 7", got)
	}
	// ... and never fewer than keep newest roots.
	if got := KeepFrom(all, desk.ID, 9, 12, 10); got != 3 {
		t.Fatalf("KeepFrom keep 10 = %d, want 3", got)
	}
	if got := KeepFrom(nil, nil, 4, 3, 5); got != 1 {
		t.Fatalf("KeepFrom with fewer roots than keep = %d, want 1", got)
	}
	n, err := ps.Forget(ctxT(t), "laptop")
	okT(t, err)
	if all, _ = ps.List(ctxT(t)); n != 1 || len(all) != 1 || all[0].Device != "desktop" {
		t.Fatalf("after forgetting the laptop (%d): %+v", n, all)
	}
}

func FuzzDecodePresence(f *testing.F) {
	f.Add(EncodePresence(Presence{ID: make([]byte, 16), Device: "h", Pid: 9, Time: -1, Anchor: 3, Unsynced: true}))
	f.Add(EncodePresence(Presence{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePresence(b)
		if err != nil {
			return
		}
		p2, err := DecodePresence(EncodePresence(p))
		if err != nil || !bytes.Equal(EncodePresence(p2), EncodePresence(p)) {
			t.Fatal("presence record does not round-trip")
		}
	})
}
