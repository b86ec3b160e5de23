"""Image and medical readers and display windows: files to arrays, without PyTorch."""
