import matplotlib
import numpy as np
import pandas as pd

from matprobe.figures import style, training

matplotlib.use("Agg")


def _history(root, target, split, loss):
    path = root / f"{target}-{split}.parquet"
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [loss] * 3, "val_mae": [loss] * 3}).to_parquet(path)
    return {"dataset": "mp36k", "target": target, "split": split, "model": "cgcnn", "seed": 0}, path


def test_training_curves_give_a_split_one_colour_in_every_panel(tmp_path, monkeypatch):
    # the band-gap histories list omit-O first, the formation-energy ones omit-Fe first: colours must not follow that
    losses = {"omit-Fe": 1.0, "omit-Fe-control": 2.0, "omit-O": 3.0, "omit-O-control": 4.0}
    runs = [_history(tmp_path, "band_gap", split, losses[split]) for split in ("omit-O", "omit-O-control", "omit-Fe", "omit-Fe-control")]
    runs += [_history(tmp_path, "formation_energy_per_atom", split, losses[split]) for split in losses]
    drawn = []
    monkeypatch.setattr(training, "save", lambda fig, path: drawn.append(fig))
    training.training_curves([key for key, _ in runs], [path for _, path in runs], tmp_path / "curves.png")
    (fig,) = drawn
    colour_of_loss = [{line.get_ydata()[0]: matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines() if len(line.get_ydata()) == 3}
                      for ax in fig.axes]
    assert all(set(panel) == set(losses.values()) for panel in colour_of_loss)
    assert all(panel == colour_of_loss[0] for panel in colour_of_loss)
    assert len(set(colour_of_loss[0].values())) == 4
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()][1:5] == list(losses)  # omission, then its control
    assert fig.axes[0].get_title().startswith("band gap:")


def test_split_order_puts_each_control_after_its_omission():
    assert style.split_order(["random", "omit-O-control", "omit-Fe", "omit-O", "omit-Fe-control"]) == [
        "omit-Fe", "omit-Fe-control", "omit-O", "omit-O-control", "random"]


def test_the_four_sets_have_colours_told_apart_at_a_glance():
    # train/val/ID/OOD share every line and violin plot; the palette's orange beside vermilion (RGB distance 0.20) was not
    colours = [np.array(matplotlib.colors.to_rgb(colour)) for colour in style.set_colors().values()]
    closest = min(np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:])
    assert len(colours) == 4 and closest > 0.25
