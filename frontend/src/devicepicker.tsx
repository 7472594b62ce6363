// The device table of the change-request and rollout forms: one "include <name>" checkbox
// per device (and, where the form picks canaries by hand, a "canary <name>" one), with the
// device's status, RouterOS version and tags, its load error and its "load more".

import type { Schemas } from "./api/client";
import type { Paged } from "./hooks";
import { Badge, LoadMore, ProblemBox, Tags } from "./ui";

type DeviceSummary = Schemas["DeviceSummaryDto"];

/** Canaries picked by hand: which devices are, and what a click on one's box does. */
export interface CanaryPick {
  ids: string[];
  onToggle: (device: string) => void;
}

export function DevicePicker({
  fleet,
  selected,
  onToggle,
  canaries,
}: {
  fleet: Paged<DeviceSummary>;
  selected: string[];
  onToggle: (device: string) => void;
  canaries?: CanaryPick;
}) {
  return (
    <>
      <ProblemBox error={fleet.error} />
      <div className="table-wrap device-picker">
        <table className="table">
          <thead>
            <tr>
              <th>In</th>
              {canaries ? <th>Canary</th> : null}
              <th>Name</th>
              <th>Status</th>
              <th>RouterOS</th>
              <th>Tags</th>
            </tr>
          </thead>
          <tbody>
            {fleet.items.map((d) => (
              <tr key={d.id}>
                <td>
                  <input type="checkbox" aria-label={`include ${d.name}`} checked={selected.includes(d.id)} onChange={() => onToggle(d.id)} />
                </td>
                {canaries ? (
                  <td>
                    <input
                      type="checkbox"
                      aria-label={`canary ${d.name}`}
                      checked={canaries.ids.includes(d.id)}
                      onChange={() => canaries.onToggle(d.id)}
                    />
                  </td>
                ) : null}
                <td>{d.name}</td>
                <td>
                  <Badge value={d.status} />
                </td>
                <td>{d.routeros_version ?? "—"}</td>
                <td>
                  <Tags tags={d.tags} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <LoadMore hasMore={fleet.hasMore} loading={fleet.loading} onMore={() => void fleet.loadMore()} count={fleet.items.length} />
    </>
  );
}
