package daemon

// Several devices in imgfs status (docs/cli.md, "Several devices"): the vault's devices from
// their presence records.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imgfs/imgfs/fs/core"
)

// cachedDevices keeps the devices line for 30 s (status may be polled; listing costs a LIST
// and one GET per device).
type cachedDevices struct {
	mu   sync.Mutex
	at   time.Time
	line string
}

func (c *cachedDevices) get(f *core.FS) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < 30*time.Second && c.line != "" {
		return c.line
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	devs, err := f.Devices(ctx)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	c.at, c.line = time.Now(), devicesLine(devs, time.Now())
	return c.line
}

// devicesLine renders "laptop (this device), desktop (last seen 2 min ago, unsynced work)".
func devicesLine(devs []core.DeviceStatus, now time.Time) string {
	sort.Slice(devs, func(i, j int) bool { return devs[i].Time > devs[j].Time })
	var parts []string
	for _, d := range devs {
		var notes []string
		if d.This {
			notes = append(notes, "this device")
		} else {
			notes = append(notes, "last seen "+ago(now.Sub(time.Unix(0, d.Time))))
			if d.Unsynced {
				notes = append(notes, "may hold unsynced work")
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", d.Device, strings.Join(notes, ", ")))
	}
	if len(parts) == 0 {
		return "none recorded"
	}
	return strings.Join(parts, ", ")
}

func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
