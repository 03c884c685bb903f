package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of the start times in /proc: 100 on
// every architecture Linux runs Go on.
const clockTicks = 100

// lookup tells from /proc whether process pid runs (false when there is
// no such process, or only its zombie: it ended and its parent has not
// collected it) and when it started (zero if unknown). known is false when
// /proc cannot tell.
func lookup(pid int) (started time.Time, running, known bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, false, true
	}
	if err != nil {
		return time.Time{}, false, false
	}
	state, ticks, err := parseStat(stat)
	if err != nil {
		return time.Time{}, false, false
	}
	if state == "Z" || state == "X" {
		return time.Time{}, false, true
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, true, true
	}
	boot, err := parseBootTime(data)
	if err != nil {
		return time.Time{}, true, true
	}
	return boot.Add(time.Duration(ticks) * (time.Second / clockTicks)), true, true
}

// parseStat reads the state of a process ("R", "S", "Z", ...) and its
// start time, in clock ticks after boot, from its /proc/PID/stat: the 3rd
// and the 22nd fields, counting from the pid. The 2nd field, the command
// name in parentheses, may hold spaces and parentheses itself, so fields
// are counted after its last ')'.
func parseStat(stat []byte) (state string, ticks uint64, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", 0, errors.New("stat: no command name")
	}
	fields := bytes.Fields(stat[i+1:])
	const starttime = 22 - 3 // fields[0] is the 3rd field, the state
	if len(fields) <= starttime {
		return "", 0, fmt.Errorf("stat: %d fields after the command name, want more than %d", len(fields), starttime)
	}
	ticks, err = strconv.ParseUint(string(fields[starttime]), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("stat: start time: %w", err)
	}
	return string(fields[0]), ticks, nil
}

// parseBootTime reads the boot time from /proc/stat's "btime" line.
func parseBootTime(stat []byte) (time.Time, error) {
	for line := range bytes.Lines(stat) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64)
			if err != nil || n <= 0 {
				return time.Time{}, fmt.Errorf("/proc/stat: btime %q", bytes.TrimSpace(rest))
			}
			return time.Unix(n, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat: no btime line")
}
