package meta

// Status is a Glance image status.
type Status string

// The statuses of Glance's image state machine.
const (
	Queued        Status = "queued"
	Saving        Status = "saving"
	Uploading     Status = "uploading"
	Importing     Status = "importing"
	Active        Status = "active"
	Deactivated   Status = "deactivated"
	Killed        Status = "killed"
	PendingDelete Status = "pending_delete"
	Deleted       Status = "deleted"
)

// Statuses lists every status an image record can hold, in lifecycle order.
// (deleted is never stored: a deleted image's record is gone.)
var Statuses = []Status{Queued, Saving, Uploading, Importing, Active, Deactivated, Killed, PendingDelete}

// legalMoves is Glance's state machine (glance/domain/__init__.py,
// _validate_image_status_before_upload and friends), less deleted, which
// the registry expresses by removing the record.
var legalMoves = map[Status][]Status{
	Queued:        {Saving, Uploading, Importing, Killed, Active},
	Saving:        {Active, Killed, Queued},
	Uploading:     {Importing, Queued, Killed},
	Importing:     {Active, Killed, Queued},
	Active:        {Deactivated, PendingDelete},
	Deactivated:   {Active, PendingDelete},
	Killed:        {PendingDelete},
	PendingDelete: {},
}

// Valid reports whether s is a status a record may hold.
func (s Status) Valid() bool {
	_, ok := legalMoves[s]
	return ok
}

// CanMove reports whether an image may go from status from to status to.
// Staying put is always allowed.
func CanMove(from, to Status) bool {
	if from == to {
		return true
	}
	for _, s := range legalMoves[from] {
		if s == to {
			return true
		}
	}
	return false
}

// HasData reports whether an image in status s owns stored content.
func (s Status) HasData() bool {
	return s == Active || s == Deactivated || s == PendingDelete
}

// InFlight reports whether s means that a writer is (or was, before a
// crash) putting data into the image.
func (s Status) InFlight() bool {
	return s == Saving || s == Uploading || s == Importing
}
