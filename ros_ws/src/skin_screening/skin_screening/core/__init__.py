"""ROS-free core shared by training, evaluation and the nodes."""
