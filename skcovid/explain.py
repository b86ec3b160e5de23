"""Where the network looks: Grad-CAM heatmaps and feature maps.

Works for every backbone of the registry (and pruned models) because it hooks
the fitted :class:`~skcovid._nets.network.TransferNet`: by default the output of
the whole backbone (its last feature map, the usual Grad-CAM layer), or any
named layer inside it (:func:`layer_names` lists the stages). Images go through
exactly the preprocessing ``predict_proba`` uses.

Grad-CAM (Selvaraju et al., ICCV 2017): the feature map ``A`` of the layer is
weighted, channel by channel, by the spatial mean of the gradient of the
class score with respect to ``A``; the positive part of the weighted sum,
upsampled to the input, shows the regions that raise that class's score.
"""

from skcovid._evaluation.explain import feature_maps, grad_cam, layer_names, overlay, plot_feature_maps, plot_grad_cam

__all__ = [
    "feature_maps",
    "grad_cam",
    "layer_names",
    "overlay",
    "plot_feature_maps",
    "plot_grad_cam",
]
