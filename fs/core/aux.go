package core

// Aux tables (docs/core.md, "Roots and metadata objects"): small keyed tables that other layers (the
// near-duplicate index, marks) keep in the vault, sharded and committed with the roots.

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

func validTable(table string) error {
	if table == "" || len(table) > 60 || strings.ContainsRune(table, '#') {
		return errnoErr(syscall.EINVAL, "aux table name must be 1-60 bytes without '#'")
	}
	return nil
}

func (f *FS) putAux(tx *bolt.Tx, table string, key, value []byte) error {
	k := f.lc.auxKey(table, key)
	return bputAux(tx, table, k, f.lc.seal("aux:"+table, k, encodeKV(key, value)))
}

// openAux decrypts and decodes the stored aux record v under bbolt key k of table.
func (f *FS) openAux(table string, k, v []byte) (key, value []byte, err error) {
	p, err := f.lc.open("aux:"+table, k, v)
	if err == nil {
		key, value, err = decodeKV(p, maxAuxKey, maxAuxValue)
	}
	if err != nil {
		return nil, nil, errnoErr(syscall.EIO, "aux record: %v", err)
	}
	return key, value, nil
}

// Aux tables are committed in 64 units per table ("table#NN", NN = first 6 bits of the
// entry's keyed hash), so one PutAux rewrites about 1/64 of its table at the next commit.
const auxUnits = 64

func auxUnit(table string, bk []byte) string { return fmt.Sprintf("%s#%02x", table, bk[0]>>2) }

// splitUnit is the inverse of auxUnit.
func splitUnit(unit string) (table string, shard byte, ok bool) {
	i := strings.LastIndexByte(unit, '#')
	if i < 1 || len(unit)-i != 3 {
		return "", 0, false
	}
	v, err := strconv.ParseUint(unit[i+1:], 16, 8)
	if err != nil || v >= auxUnits {
		return "", 0, false
	}
	return unit[:i], byte(v), true
}

// markAux records that the unit of bbolt key bk changed, in a tx that also bumps chg.
func markAux(tx *bolt.Tx, table string, bk []byte) error {
	return putU64(tx, mAuxDirty+auxUnit(table, bk), getU64(tx, mChg)+1)
}

// forAuxUnit calls fn for the entries of one unit.
func (f *FS) forAuxUnit(tx *bolt.Tx, unit string, fn func(k, v []byte) error) error {
	table, sh, ok := splitUnit(unit)
	if !ok {
		return nil
	}
	b := tx.Bucket(bAux).Bucket([]byte(table))
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek([]byte{sh << 2}); k != nil && k[0]>>2 == sh; k, v = c.Next() {
		key, val, err := f.openAux(table, k, v)
		if err != nil {
			return err
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	return nil
}

// PutAux stores key -> value in an aux table (keys up to 1 KiB, values up to 16 MiB).
func (f *FS) PutAux(table string, key, value []byte) error {
	if f.ro {
		return f.rofs()
	}
	if err := validTable(table); err != nil {
		return err
	}
	if len(key) == 0 || len(key) > maxAuxKey || len(value) > maxAuxValue {
		return errnoErr(syscall.EINVAL, "aux key or value size out of range")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updateAux(table, func(tx *bolt.Tx) error {
		if err := markAux(tx, table, f.lc.auxKey(table, key)); err != nil {
			return err
		}
		return f.putAux(tx, table, key, value)
	})
}

func (f *FS) GetAux(table string, key []byte) ([]byte, error) {
	var out []byte
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAux).Bucket([]byte(table))
		k := f.lc.auxKey(table, key)
		if b == nil || b.Get(k) == nil {
			return errnoErr(syscall.ENOENT, "no aux entry")
		}
		var err error
		_, out, err = f.openAux(table, k, b.Get(k))
		return err
	})
	return out, err
}

// DeleteAux removes key; deleting a missing key is not an error.
func (f *FS) DeleteAux(table string, key []byte) error {
	if f.ro {
		return f.rofs()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updateAux(table, func(tx *bolt.Tx) error {
		b := tx.Bucket(bAux).Bucket([]byte(table))
		if b == nil {
			return nil
		}
		if err := markAux(tx, table, f.lc.auxKey(table, key)); err != nil {
			return err
		}
		return bdelAux(tx, table, f.lc.auxKey(table, key))
	})
}

// ForEachAux calls fn for every entry of table (in no particular order). It reads batches
// of entries and calls fn with no lock held, so fn may call any FS method; entries changed
// meanwhile may or may not be seen.
func (f *FS) ForEachAux(table string, fn func(key, value []byte) error) error {
	const batch = 512
	var after []byte // bbolt key of the last entry handed out
	for {
		var keys, vals [][]byte
		var last []byte
		err := f.view(func(tx *bolt.Tx) error {
			b := tx.Bucket(bAux).Bucket([]byte(table))
			if b == nil {
				return nil
			}
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(keys) < batch; k, v = c.Next() {
				key, val, err := f.openAux(table, k, v)
				if err != nil {
					return err
				}
				keys, vals = append(keys, key), append(vals, val)
				last = append([]byte(nil), k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i := range keys {
			if err := fn(keys[i], vals[i]); err != nil {
				return err
			}
		}
		if len(keys) < batch {
			return nil
		}
		after = last
	}
}
