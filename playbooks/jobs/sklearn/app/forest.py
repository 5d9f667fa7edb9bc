"""A random forest with scikit-learn at each site; the server pools every site's trees into one forest, which
each site then evaluates on its rows (flctl.client.forest)."""

from __future__ import annotations

from tabular import labelled, site_seed

TREES = 20


def main() -> None:
    from flctl.client.forest import serve
    from sklearn.ensemble import RandomForestClassifier

    import flctl.client as fl

    fl.init()
    x, y = labelled(fl.site_name())
    serve(RandomForestClassifier(n_estimators=TREES, max_depth=6, random_state=site_seed(fl.site_name()) % 2**31),
          x, y)


if __name__ == "__main__":
    main()
