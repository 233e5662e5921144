"""Sessions: a user's ordered events cut where the inactivity gap exceeds `data.session_gap_minutes`
(GAMER's session-wise multi-behaviour setting), and a per-session view of a prepared dataset.

A new session starts at a user's first event and at every event that comes strictly more than the gap after
the previous event of the same user. An event without a timestamp has no known gap: it stays in the session
of the event before it. Input rows must be in prepared order (grouped by user, by position).
"""
import numpy as np
import pandas as pd


def session_ids(user_ids, timestamps, gap_seconds: float) -> np.ndarray:
    """0-based session index of every row within its user (int32), rows in prepared order."""
    users = pd.factorize(pd.Series(user_ids), sort=False)[0]
    n = len(users)
    if n == 0:
        return np.zeros(0, np.int32)
    # the gap to an undated event is unknown; the next dated event is compared with the last dated one
    ts = pd.Series(pd.array(timestamps, dtype="Int64")).astype(float).groupby(users).ffill().to_numpy()
    first = np.r_[True, users[1:] != users[:-1]]
    diff = np.diff(ts, prepend=np.nan)
    new = first | (np.nan_to_num(diff, nan=0.0) > gap_seconds)
    running = np.cumsum(new)
    user_start = running[np.flatnonzero(first)]  # session count at each user's first row
    starts_of_row = np.repeat(user_start, np.diff(np.r_[np.flatnonzero(first), n]))
    return (running - starts_of_row).astype(np.int32)


def session_ids_reference(user_ids, timestamps, gap_seconds: float) -> np.ndarray:
    """Plain loop, the reference the vectorised version is tested against."""
    out, prev_user, prev_ts, session = [], object(), None, 0
    for user, ts in zip(list(user_ids), list(timestamps)):
        ts = None if pd.isna(ts) else int(ts)
        if user != prev_user:
            session, prev_ts = 0, None
        elif ts is not None and prev_ts is not None and ts - prev_ts > gap_seconds:
            session += 1
        out.append(session)
        prev_user = user
        prev_ts = ts if ts is not None else prev_ts
    return np.asarray(out, np.int32)


def with_sessions(interactions: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """A copy of prepared interactions with a `session` column (int32, 0-based within each user)."""
    out = interactions.copy()
    out["session"] = session_ids(out["user_id"], out["timestamp"], gap_minutes * 60.0)
    return out


def session_table(interactions: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """One row per (user, session): user_id, session, start, end (unix s, null without timestamps), n_events,
    items (list of item ids in order) and, for multi-behaviour data, behaviors (list, aligned with items)."""
    inter = with_sessions(interactions, gap_minutes)
    grouped = inter.groupby(["user_id", "session"], sort=False)
    table = grouped.agg(start=("timestamp", "min"), end=("timestamp", "max"), n_events=("item_id", "size"),
                        items=("item_id", list))
    if "behavior" in inter.columns:
        table["behaviors"] = grouped["behavior"].agg(list)
    return table.reset_index()


def last_session_split(interactions: pd.DataFrame, gap_minutes: float, behavior: str = "buy"):
    """Session-wise next-`behavior` protocol: for each user with at least two sessions whose last session holds
    a `behavior` event, (history = every event before the last session, targets = the distinct items of that
    session with that behaviour). Returns a DataFrame user_id, history (list of row indices into
    `interactions`), targets (list of item ids)."""
    inter = with_sessions(interactions, gap_minutes).reset_index(drop=True)
    last = inter.groupby("user_id", sort=False)["session"].transform("max").to_numpy()
    in_last = inter["session"].to_numpy() == last
    is_target = in_last & (inter["behavior"] == behavior).to_numpy()
    rows = []
    for user, idx in inter.groupby("user_id", sort=False).indices.items():
        targets = list(dict.fromkeys(inter["item_id"].to_numpy()[idx[is_target[idx]]]))
        history = idx[~in_last[idx]].tolist()
        if targets and history:
            rows.append({"user_id": user, "history": history, "targets": targets})
    return pd.DataFrame(rows, columns=["user_id", "history", "targets"])
