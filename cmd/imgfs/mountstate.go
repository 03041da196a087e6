package main

// What is mounted on a mountpoint, as imgfs mount and imgfs umount see it, and which imgfs
// mount holds a path (imgfs similar, review): the one reader of the mount table in the CLI
// (docs/cli.md).
//
// A dead imgfs mount is one whose FUSE connection has no server left: the kernel then
// answers every request on it with ENOTCONN. That, not the control socket, is the test.
// The socket can accept a connection from a daemon that was just killed: its leader thread
// is already a zombie while its other threads still hold the listening socket. The
// connection is then reset a moment later, when the last thread exits and closes the fds.
// A request on the mount does not return in that window either. It returns ENOTCONN as soon
// as the dying daemon's /dev/fuse descriptor is closed, so the answer is exact either way.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/imgfs/imgfs/fs/control"
)

type mountState int

const (
	notMounted mountState = iota
	otherMount            // another file system is mounted there
	liveMount             // an imgfs daemon serves it
	deadMount             // an imgfs mount whose daemon is gone (the kernel says ENOTCONN)
)

// deadMountErr says what to do about a dead mount.
func deadMountErr(mp string) error {
	return fmt.Errorf("%s is a dead imgfs mount (its daemon is gone); clear it with imgfs umount %s, then mount again", mp, mp)
}

// statfsWait bounds how long a probe waits for a daemon that neither answers its control
// socket nor the kernel (hung, or very busy): such a mount counts as live.
const statfsWait = 20 * time.Second

// fsTypeAt returns the file system type mounted on mp ("" and false when mp is not a
// mount point). Of stacked mounts, the last one (the visible one) counts.
func fsTypeAt(mp string) (string, bool, error) {
	want := control.CanonicalMountpoint(mp)
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != want, false
	})
	if err != nil {
		return "", false, fmt.Errorf("reading the mount table: %w", err)
	}
	if len(ms) == 0 {
		return "", false, nil
	}
	return ms[len(ms)-1].FSType, true, nil
}

// findMount returns the imgfs mountpoint holding abs (the mount table, through
// moby/sys/mountinfo).
func findMount(abs string) (string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("fuse.imgfs"))
	if err != nil {
		return "", fmt.Errorf("reading the mount table: %w", err)
	}
	best := ""
	for _, m := range ms {
		mp := m.Mountpoint
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s is not inside an imgfs mount", abs)
	}
	return best, nil
}

// probeMount tells what is mounted on mp (an absolute path) and its file system type. An
// imgfs mount is live if its daemon answers on the control socket, or else if the kernel
// still reaches a server through its FUSE connection.
func probeMount(ctx context.Context, mp string) (mountState, string, error) {
	fstype, ok, err := fsTypeAt(mp)
	switch {
	case err != nil:
		return notMounted, "", err
	case !ok:
		return notMounted, "", nil
	case fstype != "fuse.imgfs":
		return otherMount, fstype, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = control.CallContext(cctx, mp, "status", nil, nil)
	cancel()
	var re *control.RemoteError
	if err == nil || errors.As(err, &re) {
		return liveMount, fstype, nil
	}
	if fuseConnDead(ctx, mp) {
		return deadMount, fstype, nil
	}
	return liveMount, fstype, nil
}

// fuseConnDead reports whether statfs(2) on mp fails with ENOTCONN: the FUSE connection
// has no server. statfs is never answered from the kernel's caches, so it reaches the
// daemon (or learns it is gone). It gives up after statfsWait and reports false.
func fuseConnDead(ctx context.Context, mp string) bool {
	res := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		res <- unix.Statfs(mp, &st)
	}()
	t := time.NewTimer(statfsWait)
	defer t.Stop()
	select {
	case err := <-res:
		return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
