//go:build !race

package sockio

func raceAcquire()      {}
func raceReleaseMerge() {}
